"""Minimal SE(3) algebra for the tracker's Gauss-Newton updates.

Twists are ordered ``(v, w)``: translation part first, then rotation, so that a
left-multiplied update ``exp(xi) @ T`` moves a point ``q`` by ``v + w x q`` to
first order (the Jacobians in :mod:`gs4_slam.tracking.solver` use this order).
"""

from __future__ import annotations

import numpy as np


def skew(w: np.ndarray) -> np.ndarray:
    """3-vector -> [3, 3] cross-product matrix."""
    return np.array([[0.0, -w[2], w[1]], [w[2], 0.0, -w[0]], [-w[1], w[0], 0.0]])


def se3_exp(xi: np.ndarray) -> np.ndarray:
    """Exponential of a twist ``(v, w)`` [6] -> [4, 4] float64 rigid transform."""
    xi = np.asarray(xi, dtype=np.float64)
    v, w = xi[:3], xi[3:]
    theta = float(np.linalg.norm(w))
    w_hat = skew(w)
    w_hat2 = w_hat @ w_hat
    if theta < 1e-8:
        # Taylor expansions: the closed forms below divide by theta.
        rot = np.eye(3) + w_hat + 0.5 * w_hat2
        v_mat = np.eye(3) + 0.5 * w_hat + w_hat2 / 6.0
    else:
        a = np.sin(theta) / theta
        b = (1.0 - np.cos(theta)) / theta**2
        c = (theta - np.sin(theta)) / theta**3
        rot = np.eye(3) + a * w_hat + b * w_hat2
        v_mat = np.eye(3) + b * w_hat + c * w_hat2
    out = np.eye(4)
    out[:3, :3] = rot
    out[:3, 3] = v_mat @ v
    return out


def se3_log(matrix: np.ndarray) -> np.ndarray:
    """Inverse of :func:`se3_exp`: [4, 4] rigid transform -> twist ``(v, w)`` [6]."""
    rot, trans = matrix[:3, :3], matrix[:3, 3]
    cos_theta = np.clip((np.trace(rot) - 1.0) / 2.0, -1.0, 1.0)
    theta = float(np.arccos(cos_theta))
    if theta < 1e-8:
        w = 0.5 * np.array([rot[2, 1] - rot[1, 2], rot[0, 2] - rot[2, 0], rot[1, 0] - rot[0, 1]])
    else:
        w_hat_unit = (rot - rot.T) / (2.0 * np.sin(theta))
        w = theta * np.array([w_hat_unit[2, 1], w_hat_unit[0, 2], w_hat_unit[1, 0]])
    w_hat = skew(w)
    if theta < 1e-8:
        v_inv = np.eye(3) - 0.5 * w_hat + w_hat @ w_hat / 12.0
    else:
        half = theta / 2.0
        coef = (1.0 - half * np.cos(half) / np.sin(half)) / theta**2
        v_inv = np.eye(3) - 0.5 * w_hat + coef * (w_hat @ w_hat)
    return np.concatenate([v_inv @ trans, w])


def motion_magnitude(matrix: np.ndarray) -> tuple[float, float]:
    """(translation in metres, rotation angle in radians) of a [4, 4] transform."""
    cos_theta = np.clip((np.trace(matrix[:3, :3]) - 1.0) / 2.0, -1.0, 1.0)
    return float(np.linalg.norm(matrix[:3, 3])), float(np.arccos(cos_theta))


def inverse(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a [4, 4] rigid transform."""
    out = np.eye(4)
    out[:3, :3] = matrix[:3, :3].T
    out[:3, 3] = -matrix[:3, :3].T @ matrix[:3, 3]
    return out


def scaled_motion(T_a: np.ndarray, T_b: np.ndarray, fraction: float) -> np.ndarray:
    """``fraction`` of the camera motion from pose ``T_a`` to ``T_b`` (both [4, 4], world from
    camera), as a [4, 4] transform in ``T_a``'s frame: constant velocity along the screw
    motion (beyond ``T_b`` for a fraction above 1, backwards for a negative one)."""
    return se3_exp(se3_log(inverse(T_a) @ T_b) * fraction)


def orthonormalize(matrix: np.ndarray) -> np.ndarray:
    """Nearest rigid transform (rotation projected onto SO(3) by SVD).

    Chained compositions such as the constant-velocity prediction
    ``T @ inv(T_prev) @ T`` roughly double the rounding error of the rotation
    per frame; without this projection it grows exponentially over a sequence.
    """
    u, _, vt = np.linalg.svd(matrix[:3, :3])
    rot = u @ vt
    if np.linalg.det(rot) < 0:
        rot = u @ np.diag([1.0, 1.0, -1.0]) @ vt
    out = np.eye(4)
    out[:3, :3] = rot
    out[:3, 3] = matrix[:3, 3]
    return out
