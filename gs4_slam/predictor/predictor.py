"""The Gaussian Prediction Model's entry point: RGB-D frame -> sparse semantic Gaussians."""
from __future__ import annotations

import copy
import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from gs4_slam.camera import Pose
from gs4_slam.frame import Frame
from gs4_slam.gaussians import GaussianSet
from gs4_slam.predictor.decode import DecodeConfig, baseline_tokens, decode_image, pool_tokens
from gs4_slam.predictor.model import GaussianPredictionNet, PredictorNetConfig
from gs4_slam.resources import find_data_file
from gs4_slam.weights_io import load_payload, save_payload

log = logging.getLogger(__name__)

WEIGHTS_FORMAT = "gs4_slam.predictor/1"
REPO_ROOT = Path(__file__).resolve().parents[2]
#: Shipped weights (committed, see weights/predictor.json for their card).
DEFAULT_WEIGHTS = find_data_file("weights/predictor.pt") or REPO_ROOT / "weights" / "predictor.pt"
RETRAIN_HINT = "retrain them with `gs4-slam train predictor` (see README, 'Training')"


class PredictorWeightsError(RuntimeError):
    """The weights file is missing, unreadable or not a predictor checkpoint."""


@dataclass(frozen=True)
class PredictorConfig:
    """Run-time settings of the predictor (YAML section ``predictor``)."""

    weights: str = ""  # empty: the shipped weights/predictor.pt
    stride: int = 8  # one Gaussian candidate per stride x stride pixels: 4, 8 or 16
    device: str = "cpu"  # cpu or cuda; inside Slam the top-level device decides
    use_baseline: bool = False  # the non-learned baseline instead of the network
    freeze: bool = True  # CPU: run the network as a frozen channels-last TorchScript graph (same outputs, faster)
    #: Arithmetic of that frozen graph: float32, bfloat16, or auto (bfloat16 where the
    #: CPU has native bf16 instructions, float32 elsewhere).
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.stride not in (4, 8, 16):
            raise ValueError(f"predictor.stride must be 4, 8 or 16, got {self.stride}")
        check_precision("predictor.precision", self.precision)


PRECISIONS = ("auto", "float32", "bfloat16")


def check_precision(key: str, value: str) -> None:
    """A precision setting (``key`` names it in the error) must be one of PRECISIONS."""
    if value not in PRECISIONS:
        raise ValueError(f"{key} must be one of {', '.join(PRECISIONS)}, got {value!r}")


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bfloat16 convolutions natively here (AVX512-BF16 or AMX);
    elsewhere it emulates them, slower than float32."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without the query
        return False


def graph_dtype(precision: str) -> torch.dtype:
    if precision == "auto":
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[precision]


@dataclass
class Prediction:
    gaussians: GaussianSet  # world frame
    dense_semantic: Tensor | None  # [C, H, W] per-pixel class logits
    time_ms: float


def save_weights(path: Path, net: GaussianPredictionNet, decode: DecodeConfig, extra: dict | None = None) -> None:
    """Write a checkpoint loadable by :func:`load_weights` (atomically)."""
    save_payload(path, {
        "format": WEIGHTS_FORMAT,
        "net_config": dataclasses.asdict(net.config),
        "decode_config": dataclasses.asdict(decode),
        "state_dict": net.state_dict(),
        "extra": extra or {},
    })


def load_weights(path: Path, device: str = "cpu") -> tuple[GaussianPredictionNet, DecodeConfig, dict]:
    """Load a predictor checkpoint; clear errors for a missing or corrupt file."""
    path = Path(path)
    payload = load_payload(path, WEIGHTS_FORMAT, "predictor", RETRAIN_HINT, PredictorWeightsError, device)
    try:
        net_config = PredictorNetConfig(**{k: tuple(v) if isinstance(v, list) else v
                                           for k, v in payload["net_config"].items()})
        net = GaussianPredictionNet(net_config)
        net.load_state_dict(payload["state_dict"])
        decode = DecodeConfig(**payload["decode_config"])
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise PredictorWeightsError(f"predictor weights at {path} do not fit the network ({exc}); {RETRAIN_HINT}") from exc
    return net.to(device).eval(), decode, payload.get("extra", {})


def frame_tensors(frames: list[Frame], device: str | torch.device = "cpu") -> tuple[Tensor, Tensor]:
    """Stack frames into [B,3,H,W] colour in [0,1] and [B,1,H,W] depth in metres."""
    rgb = np.stack([f.color_rgb for f in frames]).astype(np.float32) / 255.0
    depth = np.stack([np.nan_to_num(f.depth_m, nan=0.0, posinf=0.0) for f in frames])
    rgb_t = torch.from_numpy(rgb).permute(0, 3, 1, 2).to(device)
    depth_t = torch.from_numpy(depth)[:, None].to(device)
    return rgb_t.contiguous(), depth_t.contiguous()


class _FrozenTokenNet:
    """The network's token path as frozen TorchScript graphs in channels-last layout.

    Why: on 2 CPU cores at 320x240 the eager network took 31 ms; freezing folds each
    batch norm into its convolution and oneDNN runs NHWC convolutions without
    reordering, which brought it to 19.5 ms with outputs equal to 1e-5. One graph
    is traced per (stride, batch, height, width), on first use (about 0.2 s).

    In bfloat16 (``dtype``; CPUs with native bf16 instructions) the same graph took
    12.5 ms instead of 21 ms, and the held-out figures moved by at most 0.003 dB PSNR,
    0.001 cm depth L1 and 0.2 mIoU (a few tokens near a class boundary flip); outputs
    come back in float32.
    """

    def __init__(self, net: GaussianPredictionNet, dtype: torch.dtype = torch.float32) -> None:
        self.net = net
        self.dtype = dtype
        self._graphs: dict[tuple[int, ...], object] = {}  # a frozen graph, or _EAGER

    def __call__(self, rgb: Tensor, depth: Tensor, stride: int) -> dict[str, Tensor]:
        rgb = rgb.to(self.dtype).contiguous(memory_format=torch.channels_last)
        depth = depth.to(self.dtype).contiguous(memory_format=torch.channels_last)
        key = (stride, *rgb.shape)
        graph = self._graphs.get(key)
        if graph is None:
            graph = self._graphs[key] = self._trace(rgb, depth, stride)
        if graph is _EAGER:
            return self.net(rgb.float(), depth.float(), stride, dense_semantics=False)["tokens"]
        geometry, sem_feat = graph(rgb, depth)
        return self.net.split_tokens(geometry.float().contiguous(), sem_feat.float().contiguous())

    def _trace(self, rgb: Tensor, depth: Tensor, stride: int):
        module = _TokenPath(self.net, stride).to(memory_format=torch.channels_last, dtype=self.dtype).eval()
        try:
            with torch.no_grad():
                return torch.jit.freeze(torch.jit.trace(module, (rgb, depth), check_trace=False))
        except Exception as exc:  # a torch build without TorchScript: slower, not wrong
            log.warning("could not freeze the predictor network (%s: %s); running it eagerly", type(exc).__name__, exc)
            return _EAGER


#: Marks a size whose graph could not be built.
_EAGER = object()


class _TokenPath(nn.Module):
    def __init__(self, net: GaussianPredictionNet, stride: int) -> None:
        super().__init__()
        self.net, self.stride = copy.deepcopy(net), stride

    def forward(self, rgb: Tensor, depth: Tensor) -> tuple[Tensor, Tensor]:
        return self.net.token_outputs(rgb, depth, self.stride)


class GaussianPredictor:
    """Feed-forward RGB-D -> Gaussians, with the network or the baseline."""

    def __init__(self, config: PredictorConfig | None = None) -> None:
        self.config = config or PredictorConfig()
        self.device = torch.device(self.config.device)
        if self.config.use_baseline:
            self.net, self.decode, self.card = None, DecodeConfig(), {}
            self.num_classes, self.feature_dim = 20, 16
        else:
            weights = Path(self.config.weights) if self.config.weights else DEFAULT_WEIGHTS
            self.net, self.decode, self.card = load_weights(weights, str(self.device))
            if self.config.stride not in self.net.config.strides:
                raise PredictorWeightsError(
                    f"weights {weights} support strides {self.net.config.strides}, not {self.config.stride}"
                )
            self.num_classes, self.feature_dim = self.net.config.num_classes, self.net.config.feature_dim
        self._frozen = None
        if self.net is not None and self._freezes():
            self._frozen = _FrozenTokenNet(self.net, graph_dtype(self.config.precision))
            log.info("predictor network: frozen CPU graph in %s", self.network_precision)
        elif self.config.precision == "bfloat16":
            log.warning("predictor.precision bfloat16 applies to the frozen CPU graph only; running in float32")

    def warm_up(self, width: int, height: int) -> None:
        """Build what the first frame of this size would otherwise wait for (the
        frozen graph: a quarter of a second), so a live stream's first frames are not late."""
        if self._frozen is None or width % 16 or height % 16:
            return
        rgb, depth = torch.zeros(1, 3, height, width, device=self.device), torch.ones(1, 1, height, width, device=self.device)
        with torch.inference_mode():
            self._frozen(rgb, depth, self.config.stride)

    @property
    def network_precision(self) -> str:
        """What the network runs in: ``bfloat16``/``float32`` (frozen graph), ``float32 (eager)`` or ``baseline``."""
        if self.net is None:
            return "baseline"
        return str(self._frozen.dtype).removeprefix("torch.") if self._frozen is not None else "float32 (eager)"

    def _freezes(self) -> bool:
        # CUDA gets no graph: the gain measured is oneDNN's, and gsplat's GPU path is not the bottleneck.
        return self.config.freeze and self.device.type == "cpu"

    @torch.inference_mode()
    def predict(self, frame: Frame, T_world_cam: Pose, dense_semantics: bool = False) -> Prediction:
        """Gaussians of ``frame`` placed in the world with the camera pose ``T_world_cam``."""
        start = time.perf_counter()
        rgb, depth = frame_tensors([frame], self.device)
        _check_size(frame)
        grid = pool_tokens(rgb, depth, self.config.stride, self.decode.min_valid_fraction)
        dense = None
        if self.net is None:
            tokens = baseline_tokens(grid, self.num_classes, self.feature_dim)
        elif self._frozen is not None and not dense_semantics:
            tokens = self._frozen(rgb, depth, self.config.stride)
        else:
            out = self.net(rgb, depth, self.config.stride, dense_semantics=dense_semantics)
            tokens = out["tokens"]
            dense = out["dense_semantic"][0] if dense_semantics else None
        gaussians = decode_image(tokens, grid, 0, frame.intrinsics, T_world_cam.matrix, self.decode)
        return Prediction(gaussians, dense, 1000.0 * (time.perf_counter() - start))


def _check_size(frame: Frame) -> None:
    if frame.width % 16 or frame.height % 16:
        raise ValueError(
            f"the predictor needs an image size that is a multiple of 16, got {frame.width}x{frame.height}; "
            "resize the input (e.g. 320x240 or 640x480)"
        )
