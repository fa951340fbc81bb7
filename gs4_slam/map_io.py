"""Saving and loading Gaussian maps: a standard 3DGS ``.ply`` plus a sidecar ``.npz``.

The ``.ply`` is what common splat viewers open: binary little-endian, one
``vertex`` element of float32 properties ``x y z nx ny nz f_dc_0..2
f_rest_0.. opacity scale_0..2 rot_0..3`` (opacity as a logit, scales as logs,
rotation as w, x, y, z; ``f_rest`` channel-major as in 3DGS). Everything else
(semantic scores, features, label names, per-Gaussian counters, metadata) goes
into ``<stem>.npz`` next to it. Both files carry the same random map id, so a
mismatched pair is detected. Writes are atomic (temporary file in the same
folder, then ``os.replace``). Float32 maps round-trip exactly.

A plain 3DGS ``.ply`` without a sidecar loads too (no semantics or features).
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import uuid
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from gs4_slam.gaussians import GaussianMap, GaussianSet, sh_rest_count

FORMAT_VERSION = 1
_MAX_HEADER_BYTES = 1 << 16
_UID_COMMENT = "gs4_slam map_id"


class MapFileError(ValueError):
    """A map file is missing, truncated, foreign or inconsistent; the message says which and why."""


def sidecar_path(path: str | Path) -> Path:
    """The ``.npz`` that goes with a map ``.ply``."""
    return Path(path).with_suffix(".npz")


def _property_names(sh_rest: int) -> list[str]:
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(3 * sh_rest)]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    return names


def _atomic_write(path: Path, write: Callable[[io.BufferedWriter], None]) -> None:
    """Write through a temporary file in the same folder, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_map(gmap: GaussianMap, path: str | Path) -> None:
    """Save ``gmap`` as ``path`` (a 3DGS ``.ply``) and its sidecar ``<stem>.npz``.

    Args:
        gmap: the map; values are stored as float32.
        path: the ``.ply`` to write.
    """
    path = Path(path)
    if path.suffix.lower() != ".ply":
        raise ValueError(f"map files end in .ply, got {path}")
    map_id = uuid.uuid4().hex
    n = len(gmap)
    sh_rest = sh_rest_count(gmap.sh_degree)

    def cpu(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().numpy()

    # f_rest is written channel-major (all coefficients of red, then green, blue).
    rest = cpu(gmap.sh_rest).transpose(0, 2, 1).reshape(n, 3 * sh_rest)
    columns = [cpu(gmap.means), np.zeros((n, 3)), cpu(gmap.sh_dc), rest, cpu(gmap.opacity_logits)[:, None],
               cpu(gmap.log_scales), cpu(gmap.quats)]  # fmt: skip
    vertices = np.ascontiguousarray(np.concatenate(columns, axis=1), dtype="<f4")
    header = ["ply", "format binary_little_endian 1.0", f"comment {_UID_COMMENT} {map_id}", f"element vertex {n}"]
    header += [f"property float {name}" for name in _property_names(sh_rest)]
    header_bytes = ("\n".join(header + ["end_header"]) + "\n").encode("ascii")

    metadata = {
        "format_version": FORMAT_VERSION,
        "map_id": map_id,
        "num_gaussians": n,
        "sh_degree": gmap.sh_degree,
        "num_classes": gmap.num_classes,
        "feature_dim": gmap.feature_dim,
        "user": gmap.metadata,
    }
    sidecar = {
        "semantics": cpu(gmap.semantics).astype(np.float32),
        "features": cpu(gmap.features).astype(np.float32),
        "label_names": np.array(gmap.label_names, dtype=np.str_),
        "semantic_weight": cpu(gmap.semantic_weight).astype(np.float32),
        "n_updates": cpu(gmap.n_updates).astype(np.int32),
        "n_refinements": cpu(gmap.n_refinements).astype(np.int32),
        "keyframe_id": cpu(gmap.keyframe_id).astype(np.int32),
        "metadata": np.array(json.dumps(metadata)),
    }
    # The sidecar first: a crash between the two renames leaves ids that differ,
    # which load_map reports, rather than a silently mismatched pair.
    _atomic_write(sidecar_path(path), lambda f: np.savez(f, **sidecar))
    _atomic_write(path, lambda f: (f.write(header_bytes), f.write(vertices.tobytes())))


def _parse_header(data: bytes, path: Path) -> tuple[int, list[str], int, str | None]:
    """(vertex count, property names, header length, map id) of a 3DGS ply."""
    end = data.find(b"end_header\n", 0, _MAX_HEADER_BYTES)
    if not data.startswith(b"ply\n") or end < 0:
        raise MapFileError(f"{path}: not a PLY file (no 'ply' magic or no end_header)")
    try:
        lines = data[:end].decode("ascii").splitlines()
    except UnicodeDecodeError as exc:
        raise MapFileError(f"{path}: PLY header is not ASCII") from exc
    n_vertices, names, map_id, element = None, [], None, None
    for line in lines[1:]:
        words = line.split()
        if not words:
            continue
        if words[0] == "format":
            if words[1:] != ["binary_little_endian", "1.0"]:
                raise MapFileError(f"{path}: only binary_little_endian 1.0 PLY is supported, got '{line}'")
        elif words[0] == "comment":
            if line.startswith(f"comment {_UID_COMMENT} "):
                map_id = words[-1]
        elif words[0] == "element":
            element = words[1]
            if element != "vertex" or n_vertices is not None:
                raise MapFileError(f"{path}: not a Gaussian splat file (element '{element}')")
            n_vertices = int(words[2])
        elif words[0] == "property":
            if element != "vertex" or len(words) != 3 or words[1] not in ("float", "float32"):
                raise MapFileError(f"{path}: not a Gaussian splat file (property '{line}')")
            names.append(words[2])
        elif words[0] != "obj_info":
            raise MapFileError(f"{path}: unexpected PLY header line '{line}'")
    if n_vertices is None:
        raise MapFileError(f"{path}: PLY has no vertex element")
    return n_vertices, names, end + len(b"end_header\n"), map_id


def _read_vertices(path: Path) -> tuple[dict[str, np.ndarray], int, str | None]:
    data = path.read_bytes()
    n, names, offset, map_id = _parse_header(data, path)
    required = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
                "rot_0", "rot_1", "rot_2", "rot_3"]  # fmt: skip
    missing = [name for name in required if name not in names]
    if missing:
        raise MapFileError(f"{path}: not a 3DGS splat file, missing properties {missing}")
    n_rest = sum(name.startswith("f_rest_") for name in names)
    if n_rest % 3 or n_rest // 3 not in (0, 3, 8, 15):
        raise MapFileError(f"{path}: {n_rest} f_rest properties do not form SH degree 1..3")
    expected = n * 4 * len(names)
    found = len(data) - offset
    if found != expected:
        what = "truncated" if found < expected else "has trailing bytes"
        raise MapFileError(f"{path}: {what}: {n} vertices need {expected} bytes of data, found {found}")
    table = np.frombuffer(data, dtype="<f4", count=n * len(names), offset=offset).reshape(n, len(names))
    columns = {name: table[:, i] for i, name in enumerate(names)}
    return columns, n_rest // 3, map_id


def _read_sidecar(path: Path, n: int, map_id: str | None) -> dict | None:
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        with np.load(side, allow_pickle=False) as npz:
            content = {key: npz[key] for key in npz.files}
        metadata = json.loads(str(content["metadata"]))
    except (OSError, ValueError, KeyError) as exc:
        raise MapFileError(f"{side}: unreadable map sidecar ({exc})") from exc
    if map_id is not None and metadata.get("map_id") != map_id:
        raise MapFileError(f"{side} belongs to another map than {path} (ids {metadata.get('map_id')} != {map_id})")
    for key in ("semantics", "features", "n_updates", "keyframe_id"):
        if key not in content or content[key].shape[0] != n:
            raise MapFileError(f"{side}: '{key}' missing or not {n} rows")
    content["metadata"] = metadata
    return content


def load_map(path: str | Path, device: torch.device | str = "cpu") -> GaussianMap:
    """Load a map saved by :func:`save_map` (or any binary 3DGS ``.ply``).

    Raises:
        MapFileError: the file is missing, truncated, not a 3DGS splat file, or
            its sidecar belongs to another map.
    """
    path = Path(path)
    if not path.is_file():
        raise MapFileError(f"map file not found: {path}")
    columns, sh_rest, map_id = _read_vertices(path)
    n = len(columns["x"])
    sidecar = _read_sidecar(path, n, map_id)

    def stack(names: list[str]) -> torch.Tensor:
        if not names:
            return torch.zeros(n, 0)
        return torch.from_numpy(np.stack([columns[name] for name in names], axis=1).astype(np.float32))

    rest = stack([f"f_rest_{i}" for i in range(3 * sh_rest)]).reshape(n, 3, sh_rest).transpose(1, 2)
    gaussians = GaussianSet(
        means=stack(["x", "y", "z"]),
        log_scales=stack(["scale_0", "scale_1", "scale_2"]),
        quats=stack(["rot_0", "rot_1", "rot_2", "rot_3"]),
        opacity_logits=stack(["opacity"])[:, 0],
        sh_dc=stack(["f_dc_0", "f_dc_1", "f_dc_2"]),
        sh_rest=rest.contiguous() if sh_rest else None,
        semantics=None if sidecar is None else torch.from_numpy(sidecar["semantics"].astype(np.float32)),
        features=None if sidecar is None else torch.from_numpy(sidecar["features"].astype(np.float32)),
    )
    sh_degree = {0: 0, 3: 1, 8: 2, 15: 3}[sh_rest]
    labels = () if sidecar is None else tuple(str(s) for s in sidecar["label_names"])
    gmap = GaussianMap.from_set(gaussians, label_names=labels, sh_degree=sh_degree)
    if sidecar is not None:
        gmap.n_updates[:] = torch.from_numpy(sidecar["n_updates"].astype(np.int32))
        gmap.keyframe_id[:] = torch.from_numpy(sidecar["keyframe_id"].astype(np.int32))
        # Both absent from maps saved before fusion and refinement existed.
        if "semantic_weight" in sidecar and sidecar["semantic_weight"].shape[0] == n:
            gmap.semantic_weight[:] = torch.from_numpy(sidecar["semantic_weight"].astype(np.float32))
        if "n_refinements" in sidecar and sidecar["n_refinements"].shape[0] == n:
            gmap.n_refinements[:] = torch.from_numpy(sidecar["n_refinements"].astype(np.int32))
        gmap.metadata = dict(sidecar["metadata"].get("user", {}))
    return gmap.to(device)
