"""The Gaussian Prediction Model's network: one backbone over the RGB-D frame,
token heads at stride ``s`` and a dense semantic head.

The heads predict *corrections* to the non-learned baseline (pooled colour,
measured depth, isotropic footprint scale, identity rotation, fixed opacity): the
last layer of every token head starts at zero, so an untrained network is exactly
the baseline and training can only move away from it where the losses say so.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

#: Per-token raw outputs, in channel order of the token head.
TOKEN_FIELDS: tuple[tuple[str, int], ...] = (
    ("offset", 2),  # sub-pixel offset of the centre, in units of half a token
    ("depth", 1),  # depth correction
    ("color", 3),  # colour correction of the pooled colour
    ("log_scale", 3),  # log-scale correction of the footprint scale
    ("rotation", 4),  # quaternion (w, x, y, z) correction of the identity
    ("opacity", 1),  # opacity logit correction
)


@dataclass(frozen=True)
class PredictorNetConfig:
    """Shape of the network (fixed by a weights file)."""

    num_classes: int = 20
    feature_dim: int = 16
    widths: tuple[int, ...] = (32, 64, 96, 128)  # at strides 2, 4, 8, 16
    strides: tuple[int, ...] = (4, 8, 16)  # token strides the heads support

    def __post_init__(self) -> None:
        if len(self.widths) != 4:
            raise ValueError(f"widths must name 4 levels (strides 2, 4, 8, 16), got {self.widths}")
        if not set(self.strides) <= {4, 8, 16}:
            raise ValueError(f"supported token strides are 4, 8 and 16, got {self.strides}")


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class _Residual(nn.Module):
    def __init__(self, channels: int, dilation: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(x + self.body(x))


class _Up(nn.Module):
    """Upsample x2 and fuse with the skip connection of that level."""

    def __init__(self, c_low: int, c_skip: int, c_out: int) -> None:
        super().__init__()
        self.fuse = _conv(c_low + c_skip, c_out)

    def forward(self, low: Tensor, skip: Tensor) -> Tensor:
        up = nn.functional.interpolate(low, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(torch.cat([up, skip], dim=1))


def _head(c_in: int, c_out: int, zero_init: bool) -> nn.Sequential:
    hidden = max(c_in, 64)
    head = nn.Sequential(nn.Conv2d(c_in, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, c_out, 1))
    if zero_init:
        nn.init.zeros_(head[-1].weight)
        nn.init.zeros_(head[-1].bias)
    return head


class GaussianPredictionNet(nn.Module):
    """Encoder–decoder over the 4-channel RGB-D frame.

    forward() returns, for token stride ``s``:
        ``tokens``: dict of raw per-token corrections, each [B, k, H/s, W/s]
            (see TOKEN_FIELDS) plus ``semantic`` [B, C, H/s, W/s] and
            ``feature`` [B, F, H/s, W/s];
        ``dense_semantic``: [B, C, H, W] per-pixel class logits (None unless
            ``dense_semantics``; inference skips it for speed).
    """

    def __init__(self, config: PredictorNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or PredictorNetConfig()
        w2, w4, w8, w16 = self.config.widths
        self.enc2 = nn.Sequential(_conv(4, w2, 2), _conv(w2, w2))
        self.enc4 = nn.Sequential(_conv(w2, w4, 2), _Residual(w4))
        self.enc8 = nn.Sequential(_conv(w4, w8, 2), _Residual(w8))
        self.enc16 = nn.Sequential(_conv(w8, w16, 2), _Residual(w16, 2), _Residual(w16, 4))
        self.up8 = _Up(w16, w8, w8)
        self.up4 = _Up(w8, w4, w4)
        n_geometry = sum(k for _, k in TOKEN_FIELDS)
        c = self.config
        # One geometry/appearance head and one semantic/feature head per stride,
        # reading the decoder level of that stride.
        level_width = {4: w4, 8: w8, 16: w16}
        self.geometry_heads = nn.ModuleDict(
            {str(s): _head(level_width[s], n_geometry, zero_init=True) for s in c.strides}
        )
        self.semantic_heads = nn.ModuleDict(
            {str(s): _head(level_width[s], c.num_classes + c.feature_dim, zero_init=False) for s in c.strides}
        )
        self.dense_semantic_head = _head(w4, c.num_classes, zero_init=False)

    @staticmethod
    def normalise_input(rgb: Tensor, depth_m: Tensor) -> Tensor:
        """[B,3,H,W] colour in [0,1] and [B,1,H,W] depth in metres -> [B,4,H,W]."""
        return torch.cat([(rgb - 0.45) / 0.25, depth_m / 4.0], dim=1)

    def forward(self, rgb: Tensor, depth_m: Tensor, stride: int = 8, dense_semantics: bool = True) -> dict:
        if stride not in self.config.strides:
            raise ValueError(f"stride {stride} not supported; choose one of {self.config.strides}")
        height, width = rgb.shape[-2:]
        if height % 16 or width % 16:
            raise ValueError(f"image size {width}x{height} must be a multiple of 16")
        level, d4 = self._decoder_level(rgb, depth_m, stride, need_d4=stride == 4 or dense_semantics)
        tokens = self.split_tokens(self.geometry_heads[str(stride)](level), self.semantic_heads[str(stride)](level))
        dense = None
        if dense_semantics:
            dense = self.dense_semantic_head(d4)
            dense = nn.functional.interpolate(dense, size=(height, width), mode="bilinear", align_corners=False)
        return {"tokens": tokens, "dense_semantic": dense}

    def token_outputs(self, rgb: Tensor, depth_m: Tensor, stride: int) -> tuple[Tensor, Tensor]:
        """The token path alone, as two tensors: geometry [B, 14, Ht, Wt] and
        semantic logits + feature [B, C + F, Ht, Wt] (traceable: no checks, no dicts)."""
        level = self._decoder_level(rgb, depth_m, stride, need_d4=stride == 4)[0]
        return self.geometry_heads[str(stride)](level), self.semantic_heads[str(stride)](level)

    def split_tokens(self, geometry: Tensor, sem_feat: Tensor) -> dict[str, Tensor]:
        """Raw token outputs by name (see TOKEN_FIELDS, plus semantic and feature)."""
        tokens: dict[str, Tensor] = {}
        start = 0
        for name, k in TOKEN_FIELDS:
            tokens[name] = geometry[:, start : start + k]
            start += k
        tokens["semantic"] = sem_feat[:, : self.config.num_classes]
        tokens["feature"] = sem_feat[:, self.config.num_classes :]
        return tokens

    def _decoder_level(self, rgb: Tensor, depth_m: Tensor, stride: int, need_d4: bool) -> tuple[Tensor, Tensor | None]:
        x = self.normalise_input(rgb, depth_m)
        f2 = self.enc2(x)
        f4 = self.enc4(f2)
        f8 = self.enc8(f4)
        f16 = self.enc16(f8)
        d8 = self.up8(f16, f8)
        # The stride-4 level is only needed by stride-4 tokens and the dense head.
        d4 = self.up4(d8, f4) if need_d4 else None
        level = {4: d4, 8: d8, 16: f16}[stride]
        return level, d4

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
