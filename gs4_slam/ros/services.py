"""Service-side helpers that need no ROS: where a map may be written or read.

Any process on the ROS graph can call ``~/save_map`` and ``~/load_map``, so a
requested path is confined to the node's output directory: it is resolved (``..``
and symbolic links followed) and refused unless it still lies inside that
directory. Relative paths are taken relative to it.
"""
from __future__ import annotations

from pathlib import Path

from gs4_slam.map_io import sidecar_path

MAP_SUFFIX = ".ply"
DEFAULT_MAP_NAME = "map.ply"


class PathRefused(ValueError):
    """A requested path is outside the output directory or otherwise unusable."""


def confined_map_path(output_dir: str | Path, requested: str, must_exist: bool = False) -> Path:
    """The resolved ``.ply`` path for ``requested`` inside ``output_dir`` (an empty request: map.ply).

    Raises PathRefused naming the request and the directory when it escapes, has
    another suffix, or (``must_exist``) is not a file.
    """
    base = Path(output_dir).resolve()
    requested = requested.strip() or DEFAULT_MAP_NAME
    target = (base / Path(requested).expanduser()).resolve()
    for path in (target, sidecar_path(target).resolve()):
        if not path.is_relative_to(base):
            raise PathRefused(
                f"refused {requested!r}: it resolves to {path}, outside the output directory {base} "
                "(use a path inside it; '..', absolute paths elsewhere and links out are not allowed)"
            )
    if target.suffix != MAP_SUFFIX:
        raise PathRefused(f"refused {requested!r}: a map file must end in {MAP_SUFFIX}")
    if must_exist and not target.is_file():
        raise PathRefused(f"no map file {requested!r} in the output directory {base}")
    return target
