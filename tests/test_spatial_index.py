"""Voxel-hash spatial index against brute force."""
from __future__ import annotations

import pytest
import torch

from gs4_slam.spatial_index import VoxelHashIndex

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def clustered_points(n: int, seed: int = 0) -> torch.Tensor:
    """Points on a few noisy planes and blobs, like a map of surfaces."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(8, 3, generator=gen) * 2.0
    owner = torch.randint(0, 8, (n,), generator=gen)
    offsets = torch.randn(n, 3, generator=gen) * torch.tensor([0.5, 0.5, 0.02])
    return (centres[owner] + offsets).double()


def brute_force(points: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    return torch.cdist(queries.double(), points.double())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("voxel_size", [0.03, 0.1, 0.5])
def test_knn_matches_brute_force(device, voxel_size):
    points = clustered_points(4000).to(device)
    gen = torch.Generator().manual_seed(1)
    queries = torch.cat([points[:300] + 0.01 * torch.randn(300, 3, generator=gen, dtype=torch.float64).to(device),
                         torch.randn(50, 3, generator=gen, dtype=torch.float64).to(device) * 3.0])  # fmt: skip
    index = VoxelHashIndex(points, voxel_size)
    idx, dist = index.knn(queries, 6)
    expected, _ = torch.topk(brute_force(points, queries).to(device), 6, dim=1, largest=False)
    torch.testing.assert_close(dist, expected)
    # Indices point at points at those distances (ties may pick either).
    torch.testing.assert_close((points[idx] - queries[:, None]).norm(dim=-1), expected)


@pytest.mark.parametrize("device", DEVICES)
def test_radius_matches_brute_force(device):
    points = clustered_points(3000, seed=2).to(device)
    queries = points[::7] + 0.02
    index = VoxelHashIndex(points, 0.05)
    q, p, d = index.radius(queries, 0.12)
    full = brute_force(points, queries).to(device)
    expected = torch.nonzero(full <= 0.12)
    got = torch.stack([q, p], dim=1)
    assert len(got) == len(expected) > 0
    assert torch.equal(torch.unique(got, dim=0), torch.unique(expected, dim=0))
    torch.testing.assert_close(d, full[q, p])
    assert bool((q[1:] >= q[:-1]).all()), "grouped by query"


def test_edge_cases():
    points = clustered_points(50)
    index = VoxelHashIndex(points, 0.2)
    idx, dist = index.knn(points[:3], 80)  # more neighbours than points
    assert (idx[:, 50:] == -1).all() and torch.isinf(dist[:, 50:]).all() and (idx[:, :50] >= 0).all()
    idx, dist = index.knn(points[:3] + 100.0, 2, max_radius=1.0)  # nothing within reach
    assert (idx == -1).all()
    empty = VoxelHashIndex(torch.zeros(0, 3), 0.1)
    idx, _ = empty.knn(torch.zeros(2, 3), 3)
    assert (idx == -1).all() and len(empty.radius(torch.zeros(2, 3), 1.0)[0]) == 0
    with pytest.raises(ValueError):
        VoxelHashIndex(points, 0.0)
    with pytest.raises(ValueError, match="21-bit"):
        VoxelHashIndex(torch.tensor([[0.0, 0.0, 0.0], [1e9, 0.0, 0.0]]), 1.0)
