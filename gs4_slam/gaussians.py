"""The Gaussian map: structure-of-arrays torch tensors that grow in place.

Parameters are stored raw, the way an optimiser sees them: log-scales, unit
quaternions (w, x, y, z), opacity logits and colour as the DC spherical-harmonic
coefficient (``rgb = 0.5 + SH_C0 * sh_dc``), as in 3DGS and its ``.ply`` files.

:class:`GaussianSet` is a plain set of Gaussians (what a predictor outputs and
what the renderer consumes); :class:`GaussianMap` owns capacity-backed buffers
whose live part ``[:len(map)]`` it hands out as views.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterable

import torch
from torch import Tensor

#: Zeroth-order spherical-harmonic basis constant, 1 / (2 sqrt(pi)).
SH_C0 = 0.28209479177387814


def rgb_to_sh_dc(rgb: Tensor) -> Tensor:
    """DC coefficients [..., 3] whose colour is ``rgb`` (in [0, 1])."""
    return (rgb - 0.5) / SH_C0


def sh_dc_to_rgb(sh_dc: Tensor) -> Tensor:
    """Colour [..., 3] of DC coefficients, clamped at 0 like 3DGS (no upper clamp)."""
    return torch.clamp_min(0.5 + SH_C0 * sh_dc, 0.0)


def sh_rest_count(sh_degree: int) -> int:
    """Number of non-DC SH coefficients per colour channel of a degree."""
    if not 0 <= sh_degree <= 3:
        raise ValueError(f"sh_degree must be in 0..3, got {sh_degree}")
    return (sh_degree + 1) ** 2 - 1


@dataclass
class GaussianSet:
    """A plain set of N Gaussians, all tensors on one device and of one dtype.

    ``semantics`` and ``features`` may be ``None`` (or have zero columns) when
    the set has none; ``sh_rest`` is ``None`` for SH degree 0.
    """

    means: Tensor  # [N, 3] world frame, metres
    log_scales: Tensor  # [N, 3]
    quats: Tensor  # [N, 4] (w, x, y, z), unit length
    opacity_logits: Tensor  # [N]
    sh_dc: Tensor  # [N, 3]
    sh_rest: Tensor | None = None  # [N, K, 3], K = (degree + 1)^2 - 1
    semantics: Tensor | None = None  # [N, C] class scores
    features: Tensor | None = None  # [N, F]

    def __post_init__(self) -> None:
        n = self.means.shape[0]
        expected = {
            "means": (n, 3),
            "log_scales": (n, 3),
            "quats": (n, 4),
            "opacity_logits": (n,),
            "sh_dc": (n, 3),
        }
        for name, shape in expected.items():
            value = getattr(self, name)
            if tuple(value.shape) != shape:
                raise ValueError(f"GaussianSet.{name} must have shape {list(shape)}, got {list(value.shape)}")
        for name in ("sh_rest", "semantics", "features"):
            value = getattr(self, name)
            if value is None:
                continue
            if value.shape[0] != n or value.dim() != (3 if name == "sh_rest" else 2):
                raise ValueError(f"GaussianSet.{name} has shape {list(value.shape)} for {n} Gaussians")
        for name, value in self._tensors().items():
            if value.device != self.means.device:
                raise ValueError(f"GaussianSet.{name} is on {value.device}, means on {self.means.device}")
            if value.is_floating_point() and value.dtype != self.means.dtype:
                raise ValueError(f"GaussianSet.{name} is {value.dtype}, means are {self.means.dtype}")

    def _tensors(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def device(self) -> torch.device:
        return self.means.device

    @property
    def dtype(self) -> torch.dtype:
        return self.means.dtype

    @property
    def num_classes(self) -> int:
        return 0 if self.semantics is None else self.semantics.shape[1]

    @property
    def feature_dim(self) -> int:
        return 0 if self.features is None else self.features.shape[1]

    def scales(self) -> Tensor:
        """Standard deviations along the principal axes [N, 3]."""
        return self.log_scales.exp()

    def opacities(self) -> Tensor:
        """Opacities in (0, 1) [N]."""
        return torch.sigmoid(self.opacity_logits)

    def colors_rgb(self) -> Tensor:
        """View-independent colour [N, 3] (SH degree 0)."""
        return sh_dc_to_rgb(self.sh_dc)

    def map_tensors(self, fn) -> "GaussianSet":
        """A new set with ``fn`` applied to every tensor (``None`` stays ``None``)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return GaussianSet(**{k: None if v is None else fn(v) for k, v in values.items()})

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "GaussianSet":
        return self.map_tensors(lambda t: t.to(device=device, dtype=dtype))

    def detach(self) -> "GaussianSet":
        return self.map_tensors(Tensor.detach)

    def clone(self) -> "GaussianSet":
        return self.map_tensors(Tensor.clone)

    def index(self, idx: Tensor) -> "GaussianSet":
        """The Gaussians selected by a boolean mask [N] or index tensor [K]."""
        return self.map_tensors(lambda t: t[idx])

    @staticmethod
    def cat(sets: Iterable["GaussianSet"]) -> "GaussianSet":
        """Concatenation of sets that have the same optional fields."""
        sets = list(sets)
        if not sets:
            raise ValueError("GaussianSet.cat needs at least one set")
        values = {}
        for f in dataclasses.fields(GaussianSet):
            parts = [getattr(s, f.name) for s in sets]
            if any(p is None for p in parts) and not all(p is None for p in parts):
                raise ValueError(f"GaussianSet.cat: '{f.name}' is present in some sets only")
            values[f.name] = None if parts[0] is None else torch.cat(parts)
        return GaussianSet(**values)


# Per-Gaussian fields of a GaussianMap: name -> (trailing shape given (C, F, K), dtype is float?)
def _field_shapes(num_classes: int, feature_dim: int, sh_rest: int) -> dict[str, tuple[tuple[int, ...], bool]]:
    return {
        "means": ((3,), True),
        "log_scales": ((3,), True),
        "quats": ((4,), True),
        "opacity_logits": ((), True),
        "sh_dc": ((3,), True),
        "sh_rest": ((sh_rest, 3), True),
        "semantics": ((num_classes,), True),
        "features": ((feature_dim,), True),
        "semantic_weight": ((), True),  # evidence behind ``semantics`` (mapping.semantic_fusion)
        "n_updates": ((), False),
        "n_refinements": ((), False),  # updates by the refinement network (capped, see refiner)
        "keyframe_id": ((), False),
    }


class GaussianMap:
    """A growable map of Gaussians stored as structure-of-arrays buffers.

    Rows ``[0, len(self))`` are live; the buffers have spare capacity that
    grows by doubling, so adding Gaussians is amortised O(new). Removing
    compacts the live rows in place, keeping their order. Field accessors
    (``means``, ``semantics``, ...) return views of the live rows: writing to
    them writes to the map.

    Args:
        num_classes: C, columns of the semantic class scores.
        feature_dim: F, columns of the feature vector.
        sh_degree: degree of the stored colour SH (0..3); the renderer uses DC only.
        capacity: initial number of rows.
        label_names: names of the C classes, kept with the map and saved with it.

    Attributes:
        metadata: free-form JSON-serialisable facts about the map (saved with it).
    """

    def __init__(
        self,
        num_classes: int = 0,
        feature_dim: int = 0,
        sh_degree: int = 0,
        capacity: int = 1024,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        label_names: Iterable[str] = (),
    ) -> None:
        if num_classes < 0 or feature_dim < 0:
            raise ValueError("num_classes and feature_dim must be >= 0")
        self.num_classes = int(num_classes)
        self.feature_dim = int(feature_dim)
        self.sh_degree = int(sh_degree)
        self.label_names: tuple[str, ...] = tuple(label_names)
        if self.label_names and len(self.label_names) != self.num_classes:
            raise ValueError(f"{len(self.label_names)} label names for {self.num_classes} classes")
        self.metadata: dict = {}
        self._shapes = _field_shapes(self.num_classes, self.feature_dim, sh_rest_count(self.sh_degree))
        self._size = 0
        self._buffers = self._allocate(max(int(capacity), 1), torch.device(device), dtype)

    # -- storage -----------------------------------------------------------------

    def _allocate(self, capacity: int, device: torch.device, dtype: torch.dtype) -> dict[str, Tensor]:
        buffers = {}
        for name, (shape, is_float) in self._shapes.items():
            buffers[name] = torch.zeros((capacity,) + shape, device=device, dtype=dtype if is_float else torch.int32)
        return buffers

    @property
    def capacity(self) -> int:
        return self._buffers["means"].shape[0]

    @property
    def device(self) -> torch.device:
        return self._buffers["means"].device

    @property
    def dtype(self) -> torch.dtype:
        return self._buffers["means"].dtype

    def __len__(self) -> int:
        return self._size

    def reserve(self, capacity: int) -> None:
        """Make room for ``capacity`` rows (grows to at least twice the current capacity)."""
        if capacity <= self.capacity:
            return
        new_capacity = max(capacity, 2 * self.capacity)
        grown = self._allocate(new_capacity, self.device, self.dtype)
        for name, buffer in self._buffers.items():
            grown[name][: self._size] = buffer[: self._size]
        self._buffers = grown

    def to(self, device: torch.device | str) -> "GaussianMap":
        """Move the map to ``device`` in place; returns ``self``."""
        self._buffers = {name: buffer.to(device) for name, buffer in self._buffers.items()}
        return self

    # -- live views ----------------------------------------------------------------

    def field(self, name: str) -> Tensor:
        """View of the live rows of one field."""
        return self._buffers[name][: self._size]

    @property
    def means(self) -> Tensor:  # [N, 3]
        return self.field("means")

    @property
    def log_scales(self) -> Tensor:  # [N, 3]
        return self.field("log_scales")

    @property
    def quats(self) -> Tensor:  # [N, 4] (w, x, y, z)
        return self.field("quats")

    @property
    def opacity_logits(self) -> Tensor:  # [N]
        return self.field("opacity_logits")

    @property
    def sh_dc(self) -> Tensor:  # [N, 3]
        return self.field("sh_dc")

    @property
    def sh_rest(self) -> Tensor:  # [N, K, 3]
        return self.field("sh_rest")

    @property
    def semantics(self) -> Tensor:  # [N, C]
        return self.field("semantics")

    @property
    def features(self) -> Tensor:  # [N, F]
        return self.field("features")

    @property
    def semantic_weight(self) -> Tensor:  # [N] evidence behind the class distribution, 0 = prior only
        return self.field("semantic_weight")

    @property
    def n_updates(self) -> Tensor:  # [N] int32
        return self.field("n_updates")

    @property
    def n_refinements(self) -> Tensor:  # [N] int32
        return self.field("n_refinements")

    @property
    def keyframe_id(self) -> Tensor:  # [N] int32, -1 when not created by a keyframe
        return self.field("keyframe_id")

    def scales(self) -> Tensor:
        return self.log_scales.exp()  # [N, 3]

    def opacities(self) -> Tensor:
        return torch.sigmoid(self.opacity_logits)  # [N]

    def colors_rgb(self) -> Tensor:
        return sh_dc_to_rgb(self.sh_dc)  # [N, 3]

    def as_set(self, indices: Tensor | None = None) -> GaussianSet:
        """The live Gaussians as a :class:`GaussianSet`: views, or copies of ``indices``."""

        def pick(name: str) -> Tensor:
            live = self.field(name)
            return live if indices is None else live[indices]

        return GaussianSet(
            means=pick("means"),
            log_scales=pick("log_scales"),
            quats=pick("quats"),
            opacity_logits=pick("opacity_logits"),
            sh_dc=pick("sh_dc"),
            sh_rest=pick("sh_rest") if self.sh_degree > 0 else None,
            semantics=pick("semantics") if self.num_classes > 0 else None,
            features=pick("features") if self.feature_dim > 0 else None,
        )

    # -- editing -------------------------------------------------------------------

    def add(self, gaussians: GaussianSet, keyframe_id: int = -1) -> Tensor:
        """Append Gaussians; absent optional fields are zero.

        Args:
            gaussians: the new Gaussians (converted to the map's device and dtype).
            keyframe_id: id of the keyframe that created them.

        Returns:
            Their indices in the map [K] (int64).
        """
        k = len(gaussians)
        start = self._size
        self.reserve(start + k)
        rows = slice(start, start + k)
        for name in ("means", "log_scales", "quats", "opacity_logits", "sh_dc", "sh_rest", "semantics", "features"):
            value = getattr(gaussians, name)
            target = self._buffers[name][rows]
            if value is None or value.numel() == 0:
                target.zero_()
                continue
            if value.shape[1:] != target.shape[1:]:
                raise ValueError(f"{name} has shape {list(value.shape)}, the map stores {list(target.shape[1:])}")
            target.copy_(value.detach())
        self._buffers["semantic_weight"][rows] = 0.0
        self._buffers["n_updates"][rows] = 0
        self._buffers["n_refinements"][rows] = 0
        self._buffers["keyframe_id"][rows] = keyframe_id
        self._size = start + k
        return torch.arange(start, start + k, device=self.device)

    def write(self, indices: Tensor, gaussians: GaussianSet) -> None:
        """Overwrite the Gaussians at ``indices`` [K] (e.g. with optimised values)."""
        for name in ("means", "log_scales", "quats", "opacity_logits", "sh_dc", "sh_rest", "semantics", "features"):
            value = getattr(gaussians, name)
            if value is not None and value.numel() > 0:
                self.field(name)[indices] = value.detach().to(self.dtype)

    def mark_updated(self, indices: Tensor) -> None:
        """Count one more update of the Gaussians at ``indices``."""
        self.field("n_updates")[indices] += 1

    def remove(self, which: Tensor) -> Tensor:
        """Remove Gaussians by boolean mask [N] or indices [K], compacting in place.

        Returns:
            ``kept`` [N'] (int64): ``kept[new_index]`` is the survivor's old index,
            so callers can re-index their own per-Gaussian state (optimiser moments).
        """
        remove_mask = self._as_mask(which)
        kept = torch.nonzero(~remove_mask).flatten()
        n_new = kept.numel()
        if n_new == self._size:
            return kept
        for buffer in self._buffers.values():
            buffer[:n_new] = buffer[: self._size][kept]
        self._size = n_new
        return kept

    def prune(
        self,
        min_opacity: float = 0.005,
        max_scale: float | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """Remove nearly transparent, oversized or otherwise unwanted Gaussians.

        Args:
            min_opacity: remove those with opacity below this.
            max_scale: remove those whose largest scale exceeds this (metres).
            mask: also remove these [N] (bool).

        Returns:
            ``kept`` as for :meth:`remove`.
        """
        doomed = self.opacities() < min_opacity
        if max_scale is not None:
            doomed |= self.log_scales.max(dim=1).values > torch.log(torch.tensor(max_scale, dtype=self.dtype))
        if mask is not None:
            doomed |= self._as_mask(mask)
        return self.remove(doomed)

    def _as_mask(self, which: Tensor) -> Tensor:
        which = torch.as_tensor(which, device=self.device)
        if which.dtype == torch.bool:
            if which.shape != (self._size,):
                raise ValueError(f"mask must have shape [{self._size}], got {list(which.shape)}")
            return which
        mask = torch.zeros(self._size, dtype=torch.bool, device=self.device)
        mask[which.long()] = True
        return mask

    @staticmethod
    def from_set(
        gaussians: GaussianSet, label_names: Iterable[str] = (), sh_degree: int | None = None
    ) -> "GaussianMap":
        """A map holding a copy of ``gaussians``."""
        if sh_degree is None:
            k = 0 if gaussians.sh_rest is None else gaussians.sh_rest.shape[1]
            sh_degree = round((k + 1) ** 0.5) - 1
        gmap = GaussianMap(
            num_classes=gaussians.num_classes,
            feature_dim=gaussians.feature_dim,
            sh_degree=sh_degree,
            capacity=max(len(gaussians), 1),
            device=gaussians.device,
            dtype=gaussians.dtype,
            label_names=label_names,
        )
        gmap.add(gaussians)
        return gmap
