"""Trajectory metrics: TUM files, timestamp association, Umeyama alignment, ATE and RPE.

Definitions follow the TUM RGB-D benchmark (Sturm et al., IROS 2012): poses are
associated by nearest timestamp (each pose used at most once, at most
``max_dt_s`` apart), the estimate is aligned to the ground truth by the rigid
transform minimising squared position error (Horn/Umeyama, no scale unless
asked), and ATE is the RMSE of the remaining position differences.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from gs4_slam.camera import Pose


class TrajectoryError(ValueError):
    """A trajectory file or pair of trajectories cannot be used; the message says why."""


@dataclass(frozen=True)
class Trajectory:
    """Timestamped camera-to-world poses.

    Attributes:
        timestamps_s: float64 [N], seconds, non-decreasing.
        poses: float64 [N, 4, 4], ``T_world_cam`` of each timestamp.
    """

    timestamps_s: np.ndarray
    poses: np.ndarray

    def __post_init__(self) -> None:
        t = np.asarray(self.timestamps_s, dtype=np.float64).reshape(-1)
        p = np.asarray(self.poses, dtype=np.float64)
        if p.shape != (t.size, 4, 4):
            raise TrajectoryError(f"poses must be [{t.size}, 4, 4] to match the timestamps, got {list(p.shape)}")
        if not (np.all(np.isfinite(t)) and np.all(np.isfinite(p))):
            raise TrajectoryError("trajectory has non-finite timestamps or poses")
        object.__setattr__(self, "timestamps_s", t)
        object.__setattr__(self, "poses", p)

    @staticmethod
    def from_poses(timestamps_s: np.ndarray | list[float], poses: list[Pose]) -> Trajectory:
        matrices = np.stack([p.matrix for p in poses]) if poses else np.zeros((0, 4, 4))
        return Trajectory(np.asarray(timestamps_s, dtype=np.float64), matrices)

    def __len__(self) -> int:
        return int(self.timestamps_s.size)

    @property
    def positions(self) -> np.ndarray:
        """float64 [N, 3] camera centres in the world frame, metres."""
        return self.poses[:, :3, 3]

    def pose(self, k: int) -> Pose:
        return Pose(self.poses[k])

    def subset(self, indices: np.ndarray) -> Trajectory:
        return Trajectory(self.timestamps_s[indices], self.poses[indices])

    def transformed(self, T_new_old: np.ndarray) -> Trajectory:
        """Every pose pre-multiplied by a 4x4 transform (changes the world frame)."""
        return Trajectory(self.timestamps_s, np.asarray(T_new_old, dtype=np.float64) @ self.poses)


# ----------------------------------------------------------------------------- TUM files


def read_tum(path: str | Path) -> Trajectory:
    """Read ``timestamp tx ty tz qx qy qz qw`` lines ('#' comments), sorted by time."""
    path = Path(path)
    if not path.is_file():
        raise TrajectoryError(f"{path}: trajectory file not found")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise TrajectoryError(f"{path}: cannot read as text: {exc}") from exc
    rows = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = stripped.replace(",", " ").split()
        if len(fields) != 8:
            raise TrajectoryError(
                f"{path}:{line_no}: expected 8 values 'timestamp tx ty tz qx qy qz qw', found {len(fields)}"
            )
        try:
            values = [float(f) for f in fields]
        except ValueError:
            raise TrajectoryError(f"{path}:{line_no}: not numbers: {stripped!r}") from None
        if not np.all(np.isfinite(values)):
            raise TrajectoryError(f"{path}:{line_no}: non-finite value")
        if np.linalg.norm(values[4:8]) < 1e-9:
            raise TrajectoryError(f"{path}:{line_no}: zero quaternion")
        rows.append(values)
    if not rows:
        raise TrajectoryError(f"{path}: no poses in the file")
    data = np.asarray(rows)
    data = data[np.argsort(data[:, 0], kind="stable")]
    poses = np.tile(np.eye(4), (len(data), 1, 1))
    poses[:, :3, :3] = Rotation.from_quat(data[:, 4:8]).as_matrix()
    poses[:, :3, 3] = data[:, 1:4]
    return Trajectory(data[:, 0], poses)


def write_tum(path: str | Path, trajectory: Trajectory) -> None:
    """Write in TUM format (quaternion x y z w); creates parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    quats = Rotation.from_matrix(trajectory.poses[:, :3, :3]).as_quat() if len(trajectory) else np.zeros((0, 4))
    lines = ["# timestamp tx ty tz qx qy qz qw"]
    for t, xyz, q in zip(trajectory.timestamps_s, trajectory.positions, quats):
        lines.append(f"{t:.6f} " + " ".join(f"{v:.7f}" for v in (*xyz, *q)))
    path.write_text("\n".join(lines) + "\n")


# ----------------------------------------------------------------------------- association


def associate(
    timestamps_a_s: np.ndarray, timestamps_b_s: np.ndarray, max_dt_s: float = 0.02
) -> tuple[np.ndarray, np.ndarray]:
    """Match timestamps one-to-one by smallest difference, as TUM's associate.py.

    Candidate pairs closer than ``max_dt_s`` are accepted greedily from the
    closest; each timestamp is used at most once.

    Returns:
        (indices into a, indices into b), int64 [M] each, sorted by a.
    """
    a = np.asarray(timestamps_a_s, dtype=np.float64).reshape(-1)
    b = np.asarray(timestamps_b_s, dtype=np.float64).reshape(-1)
    order_b = np.argsort(b, kind="stable")
    b_sorted = b[order_b]
    lo = np.searchsorted(b_sorted, a - max_dt_s, side="left")
    hi = np.searchsorted(b_sorted, a + max_dt_s, side="right")
    counts = hi - lo
    # Enumerate every candidate pair (i, lo[i] + r) with r < counts[i], without a loop.
    ia = np.repeat(np.arange(a.size), counts)
    rank_in_window = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    ib_sorted = np.repeat(lo, counts) + rank_in_window
    ib = order_b[ib_sorted]
    diff = np.abs(a[ia] - b[ib])
    keep = diff <= max_dt_s
    ia, ib, diff = ia[keep], ib[keep], diff[keep]
    used_a = np.zeros(a.size, dtype=bool)
    used_b = np.zeros(b.size, dtype=bool)
    out_a, out_b = [], []
    # Greedy over candidate pairs (not pixels): a few per timestamp at most.
    for k in np.argsort(diff, kind="stable"):
        i, j = ia[k], ib[k]
        if not used_a[i] and not used_b[j]:
            used_a[i] = used_b[j] = True
            out_a.append(i)
            out_b.append(j)
    out_a_arr, out_b_arr = np.asarray(out_a, dtype=np.int64), np.asarray(out_b, dtype=np.int64)
    order = np.argsort(out_a_arr, kind="stable")
    return out_a_arr[order], out_b_arr[order]


def nearest(timestamps_query_s: np.ndarray, timestamps_ref_s: np.ndarray, max_dt_s: float = 0.02) -> np.ndarray:
    """Index into the sorted ``timestamps_ref_s`` nearest each query, -1 when > max_dt_s."""
    ref = np.asarray(timestamps_ref_s, dtype=np.float64)
    query = np.asarray(timestamps_query_s, dtype=np.float64)
    if ref.size == 0:
        return np.full(query.shape, -1, dtype=np.int64)
    right = np.clip(np.searchsorted(ref, query), 1, ref.size - 1) if ref.size > 1 else np.zeros(query.shape, int)
    left = np.maximum(right - 1, 0)
    pick = np.where(np.abs(ref[left] - query) <= np.abs(ref[right] - query), left, right)
    return np.where(np.abs(ref[pick] - query) <= max_dt_s, pick, -1).astype(np.int64)


# ----------------------------------------------------------------------------- alignment


def umeyama_alignment(
    source_xyz: np.ndarray, target_xyz: np.ndarray, with_scale: bool = False
) -> tuple[np.ndarray, np.ndarray, float]:
    """Least-squares similarity ``target ≈ s * R @ source + t`` (Umeyama 1991).

    Args:
        source_xyz: float [N, 3] points (e.g. estimated positions).
        target_xyz: float [N, 3] corresponding points (e.g. ground truth).
        with_scale: also estimate the scale s (monocular); otherwise s = 1.

    Returns:
        (R [3, 3], t [3], s).
    """
    src = np.asarray(source_xyz, dtype=np.float64)
    dst = np.asarray(target_xyz, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3:
        raise TrajectoryError(f"alignment needs two [N, 3] arrays, got {list(src.shape)} and {list(dst.shape)}")
    if src.shape[0] < 3:
        raise TrajectoryError(f"alignment needs at least 3 corresponding positions, got {src.shape[0]}")
    mu_src, mu_dst = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - mu_src, dst - mu_dst
    covariance = dst_c.T @ src_c / src.shape[0]
    u, singular, vt = np.linalg.svd(covariance)
    # Reflection guard: force a proper rotation (det = +1).
    sign = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2, 2] = -1.0
    rotation = u @ sign @ vt
    scale = 1.0
    if with_scale:
        variance_src = (src_c**2).sum() / src.shape[0]
        if variance_src <= 0:
            raise TrajectoryError("cannot estimate scale: the source positions are all identical")
        scale = float(np.trace(np.diag(singular) @ sign) / variance_src)
    translation = mu_dst - scale * rotation @ mu_src
    return rotation, translation, scale


# ----------------------------------------------------------------------------- ATE / RPE


@dataclass(frozen=True)
class AteResult:
    """Absolute trajectory error after alignment.

    Attributes:
        rmse_m, mean_m, median_m, std_m, max_m: statistics of ``errors_m``.
        errors_m: float64 [M] position error of each associated pose.
        timestamps_s: float64 [M] ground-truth timestamps of the pairs.
        est_aligned_xyz, gt_xyz: float64 [M, 3] aligned estimate and ground truth.
        T_gt_est: float64 [4, 4] rigid alignment applied to the estimate
            (rotation and translation; the scale is separate).
        scale: 1.0 unless the alignment estimated one.
    """

    rmse_m: float
    mean_m: float
    median_m: float
    std_m: float
    max_m: float
    errors_m: np.ndarray
    timestamps_s: np.ndarray
    est_aligned_xyz: np.ndarray
    gt_xyz: np.ndarray
    T_gt_est: np.ndarray
    scale: float

    @property
    def num_pairs(self) -> int:
        return int(self.errors_m.size)


@dataclass(frozen=True)
class RpeResult:
    """Relative pose error over pose pairs ``delta`` apart.

    Attributes:
        trans_rmse_m, trans_mean_m: translational drift per step, metres.
        rot_rmse_deg, rot_mean_deg: rotational drift per step, degrees.
        trans_errors_m, rot_errors_deg: float64 [K] per pair.
    """

    trans_rmse_m: float
    trans_mean_m: float
    rot_rmse_deg: float
    rot_mean_deg: float
    trans_errors_m: np.ndarray
    rot_errors_deg: np.ndarray

    @property
    def num_pairs(self) -> int:
        return int(self.trans_errors_m.size)


def associate_trajectories(
    estimate: Trajectory, ground_truth: Trajectory, max_dt_s: float = 0.02, min_pairs: int = 3
) -> tuple[Trajectory, Trajectory]:
    """The associated sub-trajectories (same length, pair k matched)."""
    i_est, i_gt = associate(estimate.timestamps_s, ground_truth.timestamps_s, max_dt_s)
    if i_est.size < min_pairs:
        raise TrajectoryError(
            f"only {i_est.size} of {len(estimate)} estimated poses have a ground-truth pose within "
            f"{max_dt_s} s (need {min_pairs}); are the timestamps of the same clock?"
        )
    return estimate.subset(i_est), ground_truth.subset(i_gt)


def ate(
    estimate: Trajectory,
    ground_truth: Trajectory,
    max_dt_s: float = 0.02,
    align: bool = True,
    with_scale: bool = False,
) -> AteResult:
    """Absolute trajectory error (positions) after rigid alignment.

    Args:
        estimate, ground_truth: trajectories on their own world frames.
        max_dt_s: association threshold.
        align: align with Horn/Umeyama first (else compare as given).
        with_scale: let the alignment also scale the estimate.
    """
    est, gt = associate_trajectories(estimate, ground_truth, max_dt_s)
    rotation, translation, scale = np.eye(3), np.zeros(3), 1.0
    if align:
        rotation, translation, scale = umeyama_alignment(est.positions, gt.positions, with_scale)
    aligned = scale * est.positions @ rotation.T + translation
    errors = np.linalg.norm(aligned - gt.positions, axis=1)
    T_gt_est = np.eye(4)
    T_gt_est[:3, :3], T_gt_est[:3, 3] = rotation, translation
    return AteResult(
        rmse_m=float(np.sqrt(np.mean(errors**2))),
        mean_m=float(errors.mean()),
        median_m=float(np.median(errors)),
        std_m=float(errors.std()),
        max_m=float(errors.max()),
        errors_m=errors,
        timestamps_s=gt.timestamps_s,
        est_aligned_xyz=aligned,
        gt_xyz=gt.positions,
        T_gt_est=T_gt_est,
        scale=scale,
    )


def rpe(
    estimate: Trajectory,
    ground_truth: Trajectory,
    max_dt_s: float = 0.02,
    delta: int = 1,
    delta_s: float | None = None,
) -> RpeResult:
    """Relative pose error between associated poses ``delta`` pairs (or ``delta_s``) apart.

    Error of pair (k, j): ``E = (G_k^-1 G_j)^-1 (P_k^-1 P_j)``; its translation norm
    and rotation angle. Independent of the world frames, so no alignment.
    """
    est, gt = associate_trajectories(estimate, ground_truth, max_dt_s, min_pairs=2)
    n = len(est)
    if delta_s is not None:
        if not delta_s > 0:
            raise TrajectoryError(f"delta_s must be > 0, got {delta_s}")
        first = np.arange(n)
        second = np.searchsorted(gt.timestamps_s, gt.timestamps_s + delta_s)
        keep = second < n
        first, second = first[keep], second[keep]
    else:
        if delta < 1:
            raise TrajectoryError(f"delta must be >= 1, got {delta}")
        first = np.arange(max(n - delta, 0))
        second = first + delta
    if first.size == 0:
        raise TrajectoryError(f"no pose pairs {delta_s if delta_s else delta} apart among {n} associated poses")
    rel_est = np.linalg.inv(est.poses[first]) @ est.poses[second]
    rel_gt = np.linalg.inv(gt.poses[first]) @ gt.poses[second]
    error = np.linalg.inv(rel_gt) @ rel_est
    trans = np.linalg.norm(error[:, :3, 3], axis=1)
    cos_angle = np.clip((np.trace(error[:, :3, :3], axis1=1, axis2=2) - 1.0) / 2.0, -1.0, 1.0)
    rot_deg = np.degrees(np.arccos(cos_angle))
    return RpeResult(
        trans_rmse_m=float(np.sqrt(np.mean(trans**2))),
        trans_mean_m=float(trans.mean()),
        rot_rmse_deg=float(np.sqrt(np.mean(rot_deg**2))),
        rot_mean_deg=float(rot_deg.mean()),
        trans_errors_m=trans,
        rot_errors_deg=rot_deg,
    )
