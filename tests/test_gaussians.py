"""GaussianMap: structure-of-arrays storage that grows, shrinks and prunes in place."""
from __future__ import annotations

import pytest
import torch

from gs4_slam.gaussians import GaussianMap, GaussianSet, rgb_to_sh_dc, sh_dc_to_rgb


def make_set(n: int, classes: int = 3, features: int = 2, seed: int = 0, sh_rest: int = 0) -> GaussianSet:
    gen = torch.Generator().manual_seed(seed)
    return GaussianSet(
        means=torch.randn(n, 3, generator=gen),
        log_scales=torch.randn(n, 3, generator=gen),
        quats=torch.nn.functional.normalize(torch.randn(n, 4, generator=gen), dim=-1),
        opacity_logits=torch.randn(n, generator=gen),
        sh_dc=torch.randn(n, 3, generator=gen),
        sh_rest=torch.randn(n, sh_rest, 3, generator=gen) if sh_rest else None,
        semantics=torch.randn(n, classes, generator=gen) if classes else None,
        features=torch.randn(n, features, generator=gen) if features else None,
    )


def test_add_returns_indices_and_views_write_through():
    gmap = GaussianMap(num_classes=3, feature_dim=2, capacity=4)
    first = gmap.add(make_set(3, seed=1), keyframe_id=7)
    second = gmap.add(make_set(2, seed=2), keyframe_id=8)
    assert first.tolist() == [0, 1, 2] and second.tolist() == [3, 4] and len(gmap) == 5
    assert gmap.keyframe_id.tolist() == [7, 7, 7, 8, 8] and gmap.n_updates.tolist() == [0] * 5
    torch.testing.assert_close(gmap.means[3:], make_set(2, seed=2).means)
    gmap.means[0] = torch.tensor([1.0, 2.0, 3.0])  # a view: writes reach the map
    assert gmap.as_set().means[0].tolist() == [1.0, 2.0, 3.0]
    gmap.mark_updated(torch.tensor([1, 3]))
    assert gmap.n_updates.tolist() == [0, 1, 0, 1, 0]


def test_capacity_grows_by_doubling_without_reallocating_every_add():
    gmap = GaussianMap(capacity=8)
    pointers, capacities = set(), []
    for step in range(40):
        gmap.add(make_set(3, classes=0, features=0, seed=step))
        pointers.add(gmap._buffers["means"].data_ptr())
        capacities.append(gmap.capacity)
    assert len(gmap) == 120 and gmap.capacity >= 120
    assert len(pointers) <= 5  # 8 -> 16 -> 32 -> 64 -> 128
    assert all(b in (a, 2 * a) or b >= a for a, b in zip(capacities, capacities[1:]))
    gmap.reserve(1000)
    assert gmap.capacity >= 1000 and len(gmap) == 120


def test_remove_compacts_in_order_and_reports_survivors():
    data = make_set(10)
    gmap = GaussianMap.from_set(data)
    kept = gmap.remove(torch.tensor([1, 4, 9]))
    assert kept.tolist() == [0, 2, 3, 5, 6, 7, 8] and len(gmap) == 7
    torch.testing.assert_close(gmap.means, data.means[kept])
    torch.testing.assert_close(gmap.semantics, data.semantics[kept])
    mask = torch.zeros(7, dtype=torch.bool)
    mask[0] = True
    assert gmap.remove(mask).tolist() == [1, 2, 3, 4, 5, 6] and len(gmap) == 6
    with pytest.raises(ValueError, match="mask"):
        gmap.remove(torch.zeros(3, dtype=torch.bool))
    gmap.add(make_set(2, seed=5))  # adding after removing reuses the freed rows
    assert len(gmap) == 8


def test_prune_by_opacity_scale_and_mask():
    data = make_set(6)
    data.opacity_logits[:] = torch.tensor([-10.0, 2.0, 2.0, 2.0, 2.0, 2.0])  # 0: transparent
    data.log_scales[:] = -3.0
    data.log_scales[2, 1] = 1.0  # 2: e^1 m, too big
    gmap = GaussianMap.from_set(data)
    kept = gmap.prune(min_opacity=0.01, max_scale=0.5, mask=torch.tensor([False, False, False, False, True, False]))
    assert kept.tolist() == [1, 3, 5]


def test_activated_accessors_and_sh_conversions():
    gmap = GaussianMap.from_set(make_set(4))
    torch.testing.assert_close(gmap.scales(), gmap.log_scales.exp())
    torch.testing.assert_close(gmap.opacities(), torch.sigmoid(gmap.opacity_logits))
    rgb = torch.tensor([[0.0, 0.5, 1.0]])
    torch.testing.assert_close(sh_dc_to_rgb(rgb_to_sh_dc(rgb)), rgb)
    assert float(sh_dc_to_rgb(torch.tensor([-100.0]))) == 0.0


def test_as_set_write_and_to_device():
    gmap = GaussianMap.from_set(make_set(5, sh_rest=3), sh_degree=1)
    subset = gmap.as_set(torch.tensor([0, 2]))
    assert len(subset) == 2 and subset.sh_rest.shape == (2, 3, 3)
    subset.means += 1.0  # a copy: the map is unchanged until written back
    assert not torch.equal(gmap.means[[0, 2]], subset.means)
    gmap.write(torch.tensor([0, 2]), subset)
    torch.testing.assert_close(gmap.means[[0, 2]], subset.means)
    assert gmap.to("cpu") is gmap and gmap.device.type == "cpu"
    if torch.cuda.is_available():
        assert gmap.to("cuda").means.is_cuda


def test_gaussian_set_validation_and_cat():
    good = make_set(3)
    with pytest.raises(ValueError, match="quats"):
        GaussianSet(good.means, good.log_scales, good.quats[:, :3], good.opacity_logits, good.sh_dc)
    with pytest.raises(ValueError, match="dtype|float64"):
        GaussianSet(good.means.double(), good.log_scales, good.quats, good.opacity_logits, good.sh_dc)
    both = GaussianSet.cat([good, make_set(2, seed=3)])
    assert len(both) == 5 and both.semantics.shape == (5, 3)
    with pytest.raises(ValueError, match="some sets only"):
        GaussianSet.cat([good, make_set(2, classes=0)])
    with pytest.raises(ValueError, match="the map stores"):
        GaussianMap(num_classes=5).add(good)
