"""Where is a class in the map: its Gaussians, grouped into connected clusters.

    result = query_class(slam.map_set(), slam.label_set.class_names, "chair")
    for c in result.clusters: print(c.centroid_m, c.bbox_min_m, c.bbox_max_m)

A Gaussian belongs to the class its fused distribution ranks first (with at
least ``min_confidence``). Clusters are the connected components of those
Gaussians' centres at ``cluster_radius_m`` (open3d's DBSCAN with one point per
core, which is exactly radius-graph connectivity; by default twice the median
spacing of the class's Gaussians, as that spacing follows the map's resolution
and the distance it was seen from); components smaller than
``min_cluster_size`` are counted but not reported as objects. Boxes are
axis-aligned in the map frame. Also ``gs4-slam query MAP.ply --class NAME``.
"""
from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from gs4_slam.gaussians import GaussianSet

log = logging.getLogger(__name__)


class UnknownClassError(ValueError):
    """The class name is not in the map's label set (the message lists the valid ones)."""


@dataclass(frozen=True)
class QueryConfig:
    min_confidence: float = 0.0  # class probability a Gaussian needs to count
    cluster_radius_m: float = 0.0  # centres closer than this are connected (0: twice the median spacing)
    min_cluster_size: int = 5  # smaller components are not reported as objects


@dataclass(frozen=True)
class ClassCluster:
    count: int
    centroid_m: tuple[float, float, float]
    bbox_min_m: tuple[float, float, float]
    bbox_max_m: tuple[float, float, float]


@dataclass(frozen=True)
class ClassQueryResult:
    class_name: str
    class_id: int
    count: int  # Gaussians of the class, in clusters or not
    clusters: list[ClassCluster]  # largest first

    def to_dict(self) -> dict:
        return asdict(self)


def class_id_of(label_names: Sequence[str], class_name: str) -> int:
    names = list(label_names)
    if not names:
        raise UnknownClassError("the map has no label set (it was saved without semantics)")
    if class_name not in names:
        raise UnknownClassError(f"unknown class {class_name!r}; valid classes: {', '.join(names)}")
    return names.index(class_name)


def query_class(gaussians: GaussianSet, label_names: Sequence[str], class_name: str,
                config: QueryConfig | None = None) -> ClassQueryResult:
    """Count and cluster the Gaussians of ``class_name``."""
    config = config or QueryConfig()
    class_id = class_id_of(label_names, class_name)
    if gaussians.semantics is None or gaussians.num_classes == 0:
        raise UnknownClassError("the map carries no class scores")
    scores = gaussians.semantics.detach().float().cpu()
    confidence, labels = scores.max(dim=1)
    members = ((labels == class_id) & (confidence >= config.min_confidence)).numpy()
    points = gaussians.means.detach().float().cpu().numpy()[members]
    return ClassQueryResult(class_name, class_id, int(members.sum()), _clusters(points, config))


def _clusters(points: np.ndarray, config: QueryConfig) -> list[ClassCluster]:
    if len(points) == 0:
        return []
    import open3d as o3d

    radius = config.cluster_radius_m if config.cluster_radius_m > 0 else _auto_radius(points)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))
    component = np.asarray(cloud.cluster_dbscan(eps=radius, min_points=1, print_progress=False))
    ids, sizes = np.unique(component[component >= 0], return_counts=True)
    clusters = []
    for cid in ids[np.argsort(-sizes, kind="stable")]:
        member = points[component == cid]
        if len(member) < config.min_cluster_size:
            continue
        clusters.append(ClassCluster(len(member), _triple(member.mean(axis=0)), _triple(member.min(axis=0)),
                                     _triple(member.max(axis=0))))
    return clusters


def _auto_radius(points: np.ndarray, floor_m: float = 0.01) -> float:
    """Twice the median distance from a centre to its nearest neighbour."""
    if len(points) < 2:
        return floor_m
    from scipy.spatial import cKDTree

    distances, _ = cKDTree(points).query(points, k=2)
    return max(2.0 * float(np.median(distances[:, 1])), floor_m)


def _triple(v: np.ndarray) -> tuple[float, float, float]:
    return float(v[0]), float(v[1]), float(v[2])


def format_result(result: ClassQueryResult) -> str:
    lines = [f"class {result.class_name!r} (id {result.class_id}): {result.count} Gaussians, "
             f"{len(result.clusters)} clusters"]
    if result.clusters:
        lines.append(f"{'#':>3} {'count':>6}  {'centroid (m)':<26} {'bbox min (m)':<26} {'bbox max (m)':<26}")
        for i, c in enumerate(result.clusters):
            fmt = "({:6.2f},{:6.2f},{:6.2f})".format
            lines.append(f"{i:>3} {c.count:>6}  {fmt(*c.centroid_m):<26} {fmt(*c.bbox_min_m):<26} "
                         f"{fmt(*c.bbox_max_m):<26}")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    from gs4_slam.map_io import MapFileError, load_map

    try:
        gmap = load_map(args.map)
    except MapFileError as exc:
        log.error("%s", exc)
        return 2
    config = QueryConfig(args.min_confidence, args.cluster_radius, args.min_cluster_size)
    try:
        result = query_class(gmap.as_set(), gmap.label_names, args.class_name, config)
    except UnknownClassError as exc:
        log.error("%s", exc)
        return 2
    print(json.dumps(result.to_dict()) if args.json else format_result(result))
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("query", help="count and locate the Gaussians of one class in a saved map",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("map", help="map .ply saved by gs4-slam (its .npz sidecar holds the classes)")
    p.add_argument("--class", dest="class_name", required=True, help="class name, e.g. chair")
    p.add_argument("--min-confidence", type=float, default=QueryConfig.min_confidence)
    p.add_argument("--cluster-radius", type=float, default=QueryConfig.cluster_radius_m,
                   help="metres; 0 (default): twice the median spacing of the class's Gaussians")
    p.add_argument("--min-cluster-size", type=int, default=QueryConfig.min_cluster_size)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=_run)
