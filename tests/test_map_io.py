"""Map files: 3DGS .ply plus .npz sidecar, exact round trip, atomic writes, clear errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gs4_slam import map_io
from gs4_slam.gaussians import GaussianMap, GaussianSet
from gs4_slam.map_io import MapFileError, load_map, save_map, sidecar_path

FIELDS = ("means", "log_scales", "quats", "opacity_logits", "sh_dc", "sh_rest", "semantics", "features",
          "n_updates", "keyframe_id")  # fmt: skip


def make_map(n: int = 40, sh_degree: int = 1, seed: int = 0) -> GaussianMap:
    gen = torch.Generator().manual_seed(seed)
    k = (sh_degree + 1) ** 2 - 1
    data = GaussianSet(
        means=torch.randn(n, 3, generator=gen),
        log_scales=torch.randn(n, 3, generator=gen),
        quats=torch.randn(n, 4, generator=gen),
        opacity_logits=torch.randn(n, generator=gen),
        sh_dc=torch.randn(n, 3, generator=gen),
        sh_rest=torch.randn(n, k, 3, generator=gen) if k else None,
        semantics=torch.randn(n, 4, generator=gen),
        features=torch.randn(n, 6, generator=gen),
    )
    gmap = GaussianMap.from_set(data, label_names=["floor", "wall", "chair", "table"], sh_degree=sh_degree)
    gmap.n_updates[:] = torch.arange(n, dtype=torch.int32)
    gmap.keyframe_id[:] = torch.arange(n, dtype=torch.int32) % 3
    gmap.metadata = {"sequence": "fr1/desk", "frames": 573}
    return gmap


@pytest.mark.parametrize("sh_degree", [0, 1, 3])
def test_round_trip_is_exact(tmp_path, sh_degree):
    gmap = make_map(sh_degree=sh_degree)
    path = tmp_path / "maps" / "room.ply"
    save_map(gmap, path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["room.npz", "room.ply"]  # no temporary files left
    loaded = load_map(path)
    for name in FIELDS:
        assert torch.equal(getattr(loaded, name), getattr(gmap, name)), name
    assert loaded.label_names == gmap.label_names and loaded.metadata == gmap.metadata
    assert loaded.sh_degree == sh_degree and len(loaded) == len(gmap)


def test_header_is_standard_3dgs(tmp_path):
    path = tmp_path / "m.ply"
    save_map(make_map(n=5, sh_degree=1), path)
    header = path.read_bytes().split(b"end_header\n")[0].decode().splitlines()
    assert header[:2] == ["ply", "format binary_little_endian 1.0"]
    assert "element vertex 5" in header
    props = [line.split()[2] for line in header if line.startswith("property float ")]
    assert props == (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
                     + [f"f_rest_{i}" for i in range(9)]
                     + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])  # fmt: skip
    assert path.stat().st_size == len("\n".join(header)) + len("\nend_header\n") + 5 * 4 * len(props)


def test_a_splat_reader_understands_the_file(tmp_path):
    o3d = pytest.importorskip("open3d")
    gmap = make_map(n=12, sh_degree=0)
    path = tmp_path / "m.ply"
    save_map(gmap, path)
    cloud = o3d.t.io.read_point_cloud(str(path))
    assert {"f_dc", "opacity", "scale", "rot"} <= set(cloud.point)
    np.testing.assert_array_equal(cloud.point.positions.numpy(), gmap.means.numpy())
    # Open3D's splat reader takes scale_* as logs and returns the scales.
    np.testing.assert_allclose(cloud.point["scale"].numpy(), gmap.log_scales.exp().numpy(), rtol=1e-6)
    np.testing.assert_array_equal(cloud.point["rot"].numpy(), gmap.quats.numpy())


def test_plain_3dgs_file_without_sidecar_loads(tmp_path):
    path = tmp_path / "m.ply"
    gmap = make_map(n=8, sh_degree=0)
    save_map(gmap, path)
    sidecar_path(path).unlink()
    loaded = load_map(path)
    assert torch.equal(loaded.means, gmap.means) and loaded.num_classes == 0 and loaded.feature_dim == 0


def test_truncated_file_is_reported(tmp_path):
    path = tmp_path / "m.ply"
    save_map(make_map(n=20), path)
    data = path.read_bytes()
    path.write_bytes(data[:-7])
    with pytest.raises(MapFileError, match="truncated"):
        load_map(path)
    path.write_bytes(data[:30])  # cut inside the header
    with pytest.raises(MapFileError, match="not a PLY"):
        load_map(path)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "not a PLY"),
        (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n0\n", "binary_little_endian"),
        (b"ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
         b"property float z\nproperty uchar red\nend_header\n" + bytes(13), "property 'property uchar red'"),
        (b"ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
         b"property float z\nelement face 0\nproperty list uchar int vertex_indices\nend_header\n" + bytes(12),
         "element 'face'"),
        (b"ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
         b"property float z\nend_header\n" + bytes(12), "missing properties"),
    ],
    ids=["png", "ascii", "colour-cloud", "mesh", "point-cloud"],
)
def test_foreign_files_are_rejected(tmp_path, content, message):
    path = tmp_path / "foreign.ply"
    path.write_bytes(content)
    with pytest.raises(MapFileError, match=message):
        load_map(path)


def test_mismatched_sidecar_and_missing_file(tmp_path):
    save_map(make_map(n=10, seed=1), tmp_path / "a.ply")
    save_map(make_map(n=10, seed=2), tmp_path / "b.ply")
    sidecar_path(tmp_path / "b.ply").replace(sidecar_path(tmp_path / "a.ply"))
    with pytest.raises(MapFileError, match="another map"):
        load_map(tmp_path / "a.ply")
    with pytest.raises(MapFileError, match="not found"):
        load_map(tmp_path / "missing.ply")


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "m.ply"
    first = make_map(n=6, seed=3)
    save_map(first, path)
    before = path.read_bytes(), sidecar_path(path).read_bytes()

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(map_io.np, "savez", explode)
    with pytest.raises(OSError, match="disk full"):
        save_map(make_map(n=9, seed=4), path)
    assert (path.read_bytes(), sidecar_path(path).read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz", "m.ply"]
    assert torch.equal(load_map(path).means, first.means)
