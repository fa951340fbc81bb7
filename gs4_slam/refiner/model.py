"""The Gaussian Refinement Network: a small attention network over world-space neighbourhoods.

Each query Gaussian (a map Gaussian the frame sees, or a new one) is described by
its own attributes plus what the current frame says about it (the observed colour
at its pixel minus its own, the depth residual there), and attends over its k
nearest map neighbours (relative position in units of its own size, colour,
opacity, scale and class differences). It outputs residual updates of colour
(SH DC), log-scales, rotation, opacity logit and class logits. The output layer
starts at zero, so an untrained network changes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

#: Output channels in order: (name, width); ``semantic`` has C channels.
UPDATE_FIELDS: tuple[tuple[str, int], ...] = (("color", 3), ("log_scale", 3), ("rotation", 4), ("opacity", 1))
EDGE_DIM = 13


@dataclass(frozen=True)
class RefinerNetConfig:
    num_classes: int = 20
    feature_dim: int = 16  # the predictor's per-Gaussian feature f
    hidden: int = 64
    neighbours: int = 8

    @property
    def own_dim(self) -> int:
        # colour 3, log-scale 3, opacity 1, quaternion 4, classes C, feature F, new 1,
        # refinements so far 1, observed colour - own 3, depth residual 1, observed 1
        return 3 + 3 + 1 + 4 + self.num_classes + self.feature_dim + 1 + 1 + 3 + 1 + 1

    @property
    def out_dim(self) -> int:
        return sum(k for _, k in UPDATE_FIELDS) + self.num_classes


def _mlp(c_in: int, hidden: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(c_in, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, c_out))


class RefinementNet(nn.Module):
    """own [Q, D], edges [Q, k, E], edge_mask [Q, k] -> updates [Q, out_dim]."""

    def __init__(self, config: RefinerNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or RefinerNetConfig()
        c, h = self.config, self.config.hidden
        self.own = _mlp(c.own_dim, h, h)
        self.edge = _mlp(EDGE_DIM + h, h, h + 1)  # value and attention logit per neighbour
        self.head = nn.Sequential(nn.Linear(2 * h, h), nn.ReLU(inplace=True), nn.Linear(h, c.out_dim))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, own: Tensor, edges: Tensor, edge_mask: Tensor) -> Tensor:
        q, k, _ = edges.shape
        own_h = torch.relu(self.own(own))
        edge_in = torch.cat([edges, own_h[:, None].expand(q, k, own_h.shape[1])], dim=2)
        edge_out = self.edge(edge_in)
        values, logits = torch.relu(edge_out[..., :-1]), edge_out[..., -1]
        logits = logits.masked_fill(~edge_mask, -1e4)
        attention = torch.softmax(logits, dim=1) * edge_mask.float()
        pooled = (attention[..., None] * values).sum(dim=1)
        return self.head(torch.cat([own_h, pooled], dim=1))

    def split(self, out: Tensor) -> dict[str, Tensor]:
        parts, start = {}, 0
        for name, width in UPDATE_FIELDS:
            parts[name] = out[:, start : start + width]
            start += width
        parts["semantic"] = out[:, start:]
        return parts

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
