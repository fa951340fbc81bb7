"""Differentiable losses agree with the evaluation metrics."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gs4_slam.losses import color_loss, depth_l1, semantic_nll, ssim
from gs4_slam.metrics.image import ssim as ssim_metric


def test_torch_ssim_matches_the_metric():
    rng = np.random.default_rng(0)
    a = rng.random((32, 40, 3))
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1)
    ours = ssim(torch.from_numpy(a).permute(2, 0, 1), torch.from_numpy(b).permute(2, 0, 1)).item()
    assert ours == pytest.approx(ssim_metric(a, b), abs=1e-6)
    assert ours < 0.99


def test_color_loss_values():
    x = torch.full((1, 3, 16, 16), 0.5)
    assert color_loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    y = x + 0.1
    # L1 part is 0.8 * 0.1; a constant offset barely changes SSIM's structure term.
    assert color_loss(x, y).item() == pytest.approx(0.08, abs=0.01)
    mask = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    mask[..., :4, :4] = True
    assert color_loss(x, y, mask).item() > 0.07


def test_depth_l1_ignores_invalid_target():
    rendered = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    target = torch.tensor([[1.5, 0.0], [3.0, 0.0]])
    assert depth_l1(rendered, target).item() == pytest.approx(0.25)


def test_semantic_nll_hand_case():
    probs = torch.tensor([0.7, 0.2, 0.1]).reshape(1, 3, 1, 1).repeat(1, 1, 1, 2)
    labels = torch.tensor([[[0, 255]]])
    assert semantic_nll(probs, labels).item() == pytest.approx(-np.log(0.7), rel=1e-5)
    # Unnormalised scores are normalised first.
    assert semantic_nll(probs * 3, labels).item() == pytest.approx(-np.log(0.7), rel=1e-5)
