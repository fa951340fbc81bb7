"""Image metrics of rendered against observed frames: PSNR, SSIM, depth L1.

Colour inputs may be uint8 (scaled to [0, 1]) or float in [0, 1]; arrays are
[H, W] or [H, W, C]. SSIM reproduces the 3D Gaussian Splatting evaluation code:
an 11x11 Gaussian window with sigma 1.5, zero padding of 5 pixels, constants
(0.01)^2 and (0.03)^2, averaged over all pixels and channels.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import correlate1d

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
_SSIM_C1 = 0.01**2
_SSIM_C2 = 0.03**2


def _as_unit_float(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.dtype == np.uint8:
        return array.astype(np.float64) / 255.0
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"image must be uint8 or float in [0, 1], got {array.dtype}")
    return array.astype(np.float64)


def _check_pair(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{what}: shapes differ: {list(a.shape)} vs {list(b.shape)}")
    if a.size == 0:
        raise ValueError(f"{what}: empty images")
    if a.ndim not in (2, 3):
        raise ValueError(f"{what}: expected [H, W] or [H, W, C], got {list(a.shape)}")


def psnr(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB for a peak value of 1 (inf when identical).

    Args:
        pred, gt: images of the same shape ([H, W] or [H, W, C]).
        mask: optional bool [H, W]; only these pixels count.
    """
    a, b = _as_unit_float(pred), _as_unit_float(gt)
    _check_pair(a, b, "psnr")
    squared = (a - b) ** 2
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != a.shape[:2]:
            raise ValueError(f"psnr: mask shape {list(mask.shape)} differs from image {list(a.shape[:2])}")
        if not mask.any():
            raise ValueError("psnr: mask selects no pixel")
        squared = squared[mask]
    mse = float(squared.mean())
    return float("inf") if mse == 0.0 else float(-10.0 * np.log10(mse))


def gaussian_window_1d(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian; the 2-D window is its outer product."""
    x = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def _blur(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    # Zero padding as torch's conv2d(padding=size//2) in the 3DGS code.
    out = correlate1d(image, window, axis=0, mode="constant", cval=0.0)
    return correlate1d(out, window, axis=1, mode="constant", cval=0.0)


def ssim_map(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM, float64 of the input's shape."""
    a, b = _as_unit_float(pred), _as_unit_float(gt)
    _check_pair(a, b, "ssim")
    window = gaussian_window_1d()
    mu_a, mu_b = _blur(a, window), _blur(b, window)
    var_a = _blur(a * a, window) - mu_a**2
    var_b = _blur(b * b, window) - mu_b**2
    cov = _blur(a * b, window) - mu_a * mu_b
    numerator = (2.0 * mu_a * mu_b + _SSIM_C1) * (2.0 * cov + _SSIM_C2)
    denominator = (mu_a**2 + mu_b**2 + _SSIM_C1) * (var_a + var_b + _SSIM_C2)
    return numerator / denominator


def ssim(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean structural similarity (1 = identical), as reported by 3DGS papers."""
    return float(ssim_map(pred, gt).mean())


def depth_l1_cm(pred_m: np.ndarray, gt_m: np.ndarray) -> float:
    """Mean absolute depth error in centimetres over pixels with valid ground truth.

    Valid = finite and > 0 in ``gt_m``. A prediction of 0 (no depth rendered) at a
    valid pixel counts as an error of the full ground-truth depth.
    """
    pred = np.asarray(pred_m, dtype=np.float64)
    gt = np.asarray(gt_m, dtype=np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"depth_l1_cm: shapes differ: {list(pred.shape)} vs {list(gt.shape)}")
    valid = np.isfinite(gt) & (gt > 0)
    if not valid.any():
        raise ValueError("depth_l1_cm: the ground truth has no valid depth")
    diff = np.abs(np.nan_to_num(pred[valid], nan=0.0, posinf=0.0, neginf=0.0) - gt[valid])
    return float(diff.mean() * 100.0)
