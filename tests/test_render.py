"""The renderer: compiled CPU kernels vs their PyTorch twins vs gsplat's reference.

gsplat's pure-PyTorch reference projection (``_quat_scale_to_covar_preci``,
``_fully_fused_projection``) runs on the CPU; its reference rasteriser does not
(``_rasterize_to_pixels`` needs the CUDA ``rasterize_to_indices_in_range`` and
nerfacc), so the reference image here is its projection composited by
``_gsplat_composite``: a direct transcription of gsplat's per-pixel loop
(alpha = min(0.999, o exp(-sigma)), skip alpha < 1/255, stop before T <= 1e-4).
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from gs4_slam.camera import Intrinsics, Pose
from gs4_slam.gaussians import GaussianMap, GaussianSet
from gs4_slam.lie import se3_exp, so3_exp
from gs4_slam.render import CHANNELS, camera_matrix, load_cpu_kernels, project_gaussians, render
from gs4_slam.render import _torch_impl
from gs4_slam.render.api import gsplat_cuda_available
from gs4_slam.render.rasterize import TILE_SHAPE, rasterize_to_pixels

gsplat_ref = pytest.importorskip("gsplat.cuda._torch_impl")

INTRINSICS = Intrinsics(width=48, height=36, fx=40.0, fy=42.0, cx=23.2, cy=17.7)
ALL_CHANNELS = ("color", "depth", "alpha", "semantics", "features")


@pytest.fixture(scope="module")
def kernels():
    """The compiled kernels, built here if the set-up has not built them."""
    module = load_cpu_kernels()
    if module is None:
        pytest.fail("the CPU render kernels did not build: run python -m gs4_slam.ext")
    return module


def random_scene(n: int, dtype=torch.float64, seed: int = 0, classes: int = 4, features: int = 5) -> GaussianSet:
    """Gaussians in front of the default camera, a few px to tens of px across."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.rand(*shape, generator=gen, dtype=dtype)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype)

    means = torch.stack([(rand(n) - 0.5) * 2.4, (rand(n) - 0.5) * 1.8, 1.5 + 2.0 * rand(n)], dim=-1)
    return GaussianSet(
        means=means,
        log_scales=torch.log(0.02 + 0.15 * rand(n, 3)),
        quats=randn(n, 4),
        opacity_logits=randn(n) * 1.5 + 0.5,
        sh_dc=randn(n, 3),
        semantics=randn(n, classes) if classes else None,
        features=randn(n, features) if features else None,
    )


def camera_pose(dtype=torch.float64) -> torch.Tensor:
    xi = torch.tensor([0.05, -0.03, 0.1, 0.02, -0.04, 0.03], dtype=dtype)
    return se3_exp(xi)


def with_grad(gaussians: GaussianSet) -> GaussianSet:
    return gaussians.map_tensors(lambda t: t.detach().clone().requires_grad_())


def params(gaussians: GaussianSet) -> list[torch.Tensor]:
    return [t for t in (gaussians.means, gaussians.log_scales, gaussians.quats, gaussians.opacity_logits,
                        gaussians.sh_dc, gaussians.semantics, gaussians.features) if t is not None]  # fmt: skip


def weighted_loss(out, channels, seed=1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    loss = 0.0
    for name in channels:
        image = getattr(out, name)
        loss = loss + (image * torch.randn(image.shape, generator=gen, dtype=image.dtype)).sum()
    return loss


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Max abs difference relative to the reference's largest magnitude."""
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


# -- gsplat reference -------------------------------------------------------------


def _gsplat_composite(means2d, conics, opacities, colors, depths, visible, width, height):
    """gsplat's per-pixel front-to-back loop, vectorised over pixels."""
    ys, xs = torch.meshgrid(torch.arange(height, dtype=means2d.dtype), torch.arange(width, dtype=means2d.dtype),
                            indexing="ij")  # fmt: skip
    px, py = xs + 0.5, ys + 0.5
    trans = torch.ones(height, width, dtype=means2d.dtype)
    done = torch.zeros(height, width, dtype=torch.bool)
    image = torch.zeros(height, width, colors.shape[1], dtype=means2d.dtype)
    idx = torch.nonzero(visible).flatten()
    for g in idx[torch.sort(depths.detach()[idx], stable=True).indices].tolist():
        dx, dy = px - means2d[g, 0], py - means2d[g, 1]
        a, b, c = conics[g]
        sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
        alpha = torch.clamp_max(opacities[g] * torch.exp(-sigma), 0.999)
        skip = (sigma < 0) | (alpha < 1.0 / 255.0) | done
        next_t = trans * (1 - alpha)
        stop = ~skip & (next_t <= 1e-4)
        done = done | stop
        use = ~skip & ~stop
        image = image + torch.where(use, alpha * trans, 0.0)[..., None] * colors[g]
        trans = torch.where(use, next_t, trans)
    return image, 1 - trans


def gsplat_reference_render(gaussians: GaussianSet, intrinsics: Intrinsics, T_cam_world, channels):  # noqa: N803
    """Colour, depth, alpha, semantics, features from gsplat's reference functions."""
    width, height = intrinsics.width, intrinsics.height
    K = camera_matrix(intrinsics, torch.device("cpu"), gaussians.dtype)  # noqa: N806
    covars, _ = gsplat_ref._quat_scale_to_covar_preci(gaussians.quats, gaussians.log_scales.exp(), True, False)
    radii, means2d, depths, conics, _ = gsplat_ref._fully_fused_projection(
        gaussians.means, covars, T_cam_world[None], K[None], width, height
    )
    parts = {"color": torch.clamp_min(0.5 + 0.28209479177387814 * gaussians.sh_dc, 0.0),
             "depth": depths[0][:, None], "semantics": gaussians.semantics, "features": gaussians.features}  # fmt: skip
    names = [c for c in ("color", "depth", "semantics", "features") if c in channels]
    colors = torch.cat([parts[c] for c in names], dim=1)
    image, alpha = _gsplat_composite(means2d[0], conics[0], torch.sigmoid(gaussians.opacity_logits), colors,
                                     depths[0], (radii[0] > 0).all(-1), width, height)  # fmt: skip
    out, start = {"alpha": alpha}, 0
    for c in names:
        size = parts[c].shape[1]
        out[c] = image[..., start : start + size] if c != "depth" else image[..., start]
        start += size
    return out


# -- parity ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["cpu", "torch"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_gsplat_reference_forward_and_gradients(kernels, backend, dtype):
    scene = random_scene(60, dtype=dtype, seed=3)
    ours, ref = with_grad(scene), with_grad(scene)
    pose_ours = camera_pose(dtype).requires_grad_()
    pose_ref = camera_pose(dtype).requires_grad_()

    out = render(ours, INTRINSICS, pose_ours, channels=ALL_CHANNELS, backend=backend)
    expected = gsplat_reference_render(ref, INTRINSICS, pose_ref, ALL_CHANNELS)
    assert float(expected["alpha"].detach().max()) > 0.5, "scene should cover part of the image"
    for name in ALL_CHANNELS:
        assert rel_err(getattr(out, name), expected[name]) < 1e-3, name

    class Wrap:  # the reference's outputs under RenderOutput's attribute names
        def __init__(self, d):
            self.__dict__.update(d)

    grads = torch.autograd.grad(weighted_loss(out, ALL_CHANNELS), params(ours) + [pose_ours])
    grads_ref = torch.autograd.grad(weighted_loss(Wrap(expected), ALL_CHANNELS), params(ref) + [pose_ref])
    names = ["means", "log_scales", "quats", "opacity_logits", "sh_dc", "semantics", "features", "pose"]
    for name, g, g_ref in zip(names, grads, grads_ref):
        assert rel_err(g, g_ref) < 1e-3, name


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_projection_kernel_matches_gsplat_reference(kernels, dtype):
    scene = random_scene(200, dtype=dtype, seed=5)
    K = camera_matrix(INTRINSICS, torch.device("cpu"), dtype)  # noqa: N806
    w, h = INTRINSICS.width, INTRINSICS.height
    results = []
    for impl in ("kernel", "twin", "gsplat"):
        g = with_grad(scene)
        pose = camera_pose(dtype).requires_grad_()
        if impl == "gsplat":
            covars, _ = gsplat_ref._quat_scale_to_covar_preci(g.quats, g.log_scales.exp(), True, False)
            radii, means2d, depths, conics, _ = gsplat_ref._fully_fused_projection(
                g.means, covars, pose[None], K[None], w, h
            )
            means2d, depths, conics, valid = means2d[0], depths[0], conics[0], (radii[0] > 0).all(-1)
        else:
            proj = project_gaussians(g.means, g.quats, g.log_scales, g.opacity_logits, pose, K, w, h,
                                     kernels=kernels if impl == "kernel" else None)  # fmt: skip
            means2d, depths, conics, valid = proj.means2d, proj.depths, proj.conics, proj.valid
        results.append((g, pose, means2d, depths, conics, valid))
    valid = results[2][5] & results[0][5] & results[1][5]
    assert int(valid.sum()) > 50
    gen = torch.Generator().manual_seed(0)
    weights = [torch.randn(valid.shape + (d,), generator=gen, dtype=dtype) for d in (2, 1, 3)]
    outputs, grads = [], []
    for g, pose, means2d, depths, conics, _ in results:
        outputs.append((means2d[valid], depths[valid], conics[valid]))
        loss = sum(((x * wt.squeeze(-1) if x.dim() == 1 else x * wt)[valid]).sum()
                   for x, wt in zip((means2d, depths, conics), weights))  # fmt: skip
        grads.append(torch.autograd.grad(loss, [g.means, g.quats, g.log_scales, pose]))
    for ours in (0, 1):
        for a, b in zip(outputs[ours], outputs[2]):
            assert rel_err(a, b) < 1e-5
        for a, b in zip(grads[ours], grads[2]):
            assert rel_err(a, b) < 1e-4


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n_channels", [0, 3, 4, 9])
def test_kernels_match_torch_twins(kernels, dtype, n_channels):
    scene = random_scene(150, dtype=dtype, seed=7)
    K = camera_matrix(INTRINSICS, torch.device("cpu"), dtype)  # noqa: N806
    w, h = INTRINSICS.width, INTRINSICS.height
    proj = project_gaussians(scene.means, scene.quats, scene.log_scales, scene.opacity_logits, camera_pose(dtype),
                             K, w, h, kernels=kernels)  # fmt: skip
    args = (proj.means2d, proj.conics, proj.opacities, proj.depths, proj.valid, w, h)
    for tile in (TILE_SHAPE, (16, 16), (8, 4)):
        bins = kernels.bin_tiles(*(t.contiguous() if isinstance(t, torch.Tensor) else t for t in args), *tile)
        twin = _torch_impl._bin_tiles(*args, *tile)
        for a, b in zip(bins, twin):
            assert torch.equal(a, b)

    colors = torch.randn(len(scene), n_channels, dtype=dtype, generator=torch.Generator().manual_seed(1))
    outs = []
    for kern in (kernels, None):
        leaves = [t.detach().clone().requires_grad_() for t in (proj.means2d, proj.conics, proj.opacities, colors)]
        r = rasterize_to_pixels(leaves[0], leaves[1], leaves[2], leaves[3], proj.depths, proj.valid, w, h, kern)
        gen = torch.Generator().manual_seed(2)
        loss = (r.image * torch.randn(r.image.shape, generator=gen, dtype=dtype)).sum() + (r.alpha * 1.7).sum()
        outs.append((r, torch.autograd.grad(loss, leaves, allow_unused=True)))
    (r_k, g_k), (r_t, g_t) = outs
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    assert rel_err(r_k.alpha, r_t.alpha) < tol
    if n_channels:
        assert rel_err(r_k.image, r_t.image) < tol
    assert torch.equal(r_k.pixel_contributors, r_t.pixel_contributors)
    assert torch.equal(r_k.gaussian_pixels, r_t.gaussian_pixels)
    for a, b in zip(g_k, g_t):
        if b is not None and b.numel() and b.abs().max() > 0:
            assert rel_err(a, b) < tol


@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_pose_gradient_matches_finite_differences(kernels, backend):
    scene = random_scene(40, seed=11)
    T0 = camera_pose()  # noqa: N806

    def loss_at(xi: torch.Tensor) -> torch.Tensor:
        out = render(scene, INTRINSICS, se3_exp(xi) @ T0, channels=("color", "depth", "alpha"), backend=backend)
        return weighted_loss(out, ("color", "depth", "alpha"))

    xi = torch.zeros(6, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(loss_at(xi), xi)
    eps = 1e-7
    basis = torch.eye(6, dtype=torch.float64)
    numeric = torch.stack([(loss_at(eps * e) - loss_at(-eps * e)) / (2 * eps) for e in basis])
    assert float(grad.abs().max()) > 1.0
    assert rel_err(grad, numeric) < 1e-4


def test_mean_and_opacity_gradients_match_finite_differences(kernels):
    scene = random_scene(30, seed=13)
    pose = camera_pose()

    def loss_with(**changes) -> torch.Tensor:
        fields = {name: getattr(scene, name) for name in ("means", "log_scales", "quats", "opacity_logits", "sh_dc")}
        fields.update(changes)
        out = render(GaussianSet(**fields), INTRINSICS, pose, channels=("color", "depth", "alpha"), backend="cpu")
        return weighted_loss(out, ("color", "depth", "alpha"))

    leaf = with_grad(scene)
    out = render(leaf, INTRINSICS, pose, channels=("color", "depth", "alpha"), backend="cpu")
    g_means, g_quats, g_logits = torch.autograd.grad(weighted_loss(out, ("color", "depth", "alpha")),
                                                     [leaf.means, leaf.quats, leaf.opacity_logits])  # fmt: skip
    eps = 1e-7
    for name, analytic in (("means", g_means), ("quats", g_quats), ("opacity_logits", g_logits)):
        base = getattr(scene, name)
        for flat in torch.argsort(analytic.abs().flatten(), descending=True)[:4].tolist():
            delta = torch.zeros_like(base).flatten()
            delta[flat] = eps
            delta = delta.reshape(base.shape)
            numeric = (loss_with(**{name: base + delta}) - loss_with(**{name: base - delta})) / (2 * eps)
            assert abs(float(numeric) - float(analytic.flatten()[flat])) < 1e-4 * float(analytic.abs().max()), name


# -- behaviour --------------------------------------------------------------------------


def test_channel_selection(kernels):
    scene = random_scene(50, dtype=torch.float32, seed=2)
    full = render(scene, INTRINSICS, camera_pose(torch.float32), channels=ALL_CHANNELS)
    assert full.backend == "cpu"
    assert full.color.shape == (36, 48, 3) and full.depth.shape == (36, 48) and full.alpha.shape == (36, 48)
    assert full.semantics.shape == (36, 48, 4) and full.features.shape == (36, 48, 5)
    only = render(scene, INTRINSICS, camera_pose(torch.float32), channels=("semantics",))
    assert only.color is None and only.depth is None and only.alpha is None and only.features is None
    torch.testing.assert_close(only.semantics, full.semantics, rtol=1e-5, atol=1e-6)
    alpha_only = render(scene, INTRINSICS, camera_pose(torch.float32), channels=("alpha",))
    torch.testing.assert_close(alpha_only.alpha, full.alpha, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="unknown channel"):
        render(scene, INTRINSICS, camera_pose(torch.float32), channels=("colour",))
    bare = GaussianSet(scene.means, scene.log_scales, scene.quats, scene.opacity_logits, scene.sh_dc)
    with pytest.raises(ValueError, match="no class scores"):
        render(bare, INTRINSICS, camera_pose(torch.float32), channels=("semantics",))
    assert set(ALL_CHANNELS) == set(CHANNELS)


def test_gaussians_behind_the_camera_are_culled(kernels):
    scene = random_scene(40, dtype=torch.float32, seed=4)
    behind = scene.clone()
    behind.means[:, 2] = -behind.means[:, 2]  # mirrored behind the camera
    behind.means[:5, 2] = 0.005  # and a few closer than the near plane
    for backend in ("cpu", "torch"):
        out = render(behind, INTRINSICS, torch.eye(4), channels=("color", "depth", "alpha"), backend=backend)
        assert float(out.alpha.abs().max()) == 0.0 and float(out.color.abs().max()) == 0.0
        assert not bool(out.visible.any()) and int(out.gaussian_pixels.sum()) == 0
        mixed = GaussianSet.cat([scene, behind])
        alone = render(scene, INTRINSICS, torch.eye(4), backend=backend)
        both = render(mixed, INTRINSICS, torch.eye(4), backend=backend)
        torch.testing.assert_close(both.color, alone.color)
        torch.testing.assert_close(both.depth, alone.depth)


def test_empty_map_renders_nothing(kernels):
    empty = GaussianMap(num_classes=3, feature_dim=2)
    for backend in ("auto", "cpu", "torch"):
        out = render(empty, INTRINSICS, np.eye(4), channels=ALL_CHANNELS, backend=backend)
        assert out.color.shape == (36, 48, 3) and float(out.color.abs().max()) == 0.0
        assert out.semantics.shape == (36, 48, 3) and out.features.shape == (36, 48, 2)
        assert out.radii.shape == (0, 2) and out.visible.shape == (0,)


def test_visibility_meta_is_consistent(kernels):
    scene = random_scene(80, dtype=torch.float32, seed=6)
    out = render(scene, INTRINSICS, camera_pose(torch.float32))
    assert int(out.gaussian_pixels.sum()) == int(out.pixel_contributors.sum()) > 0
    assert bool(out.visible[out.gaussian_pixels > 0].all())
    assert out.means2d.shape == (80, 2) and out.depths.shape == (80,)


def test_pixel_centres_follow_the_opencv_convention(kernels):
    # A small round Gaussian on the optical axis lands on pixel (cx, cy) of OpenCV
    # intrinsics, whose pixel centres are at integer coordinates.
    intr = Intrinsics(width=21, height=15, fx=30.0, fy=30.0, cx=10.0, cy=7.0)
    dot = GaussianSet(means=torch.tensor([[0.0, 0.0, 2.0]]), log_scales=torch.full((1, 3), -3.5),
                      quats=torch.tensor([[1.0, 0, 0, 0]]), opacity_logits=torch.tensor([3.0]),
                      sh_dc=torch.zeros(1, 3))  # fmt: skip
    for backend in ("cpu", "torch"):
        alpha = render(dot, intr, torch.eye(4), channels=("alpha",), backend=backend).alpha
        v, u = np.unravel_index(int(alpha.argmax()), alpha.shape)
        assert (u, v) == (10, 7)
        torch.testing.assert_close(alpha[7, 9], alpha[7, 11])
        torch.testing.assert_close(alpha[6, 10], alpha[8, 10])


def test_depth_normalisation_and_background(kernels):
    # An opaque wall of overlapping Gaussians at z = 2 fills the view.
    ys, xs = torch.meshgrid(torch.linspace(-1.4, 1.4, 40), torch.linspace(-1.8, 1.8, 50), indexing="ij")
    n = xs.numel()
    wall = GaussianSet(means=torch.stack([xs.flatten(), ys.flatten(), torch.full((n,), 2.0)], -1),
                       log_scales=torch.log(torch.tensor([0.06, 0.06, 0.01])).expand(n, 3).clone(),
                       quats=torch.tensor([1.0, 0, 0, 0]).expand(n, 4).clone(), opacity_logits=torch.full((n,), 4.0),
                       sh_dc=torch.zeros(n, 3))  # fmt: skip
    out = render(wall, INTRINSICS, torch.eye(4), normalize_depth=True, background=torch.tensor([1.0, 0.0, 0.0]))
    assert float(out.alpha.min()) > 0.99
    torch.testing.assert_close(out.depth, torch.full_like(out.depth, 2.0), rtol=1e-4, atol=1e-4)
    raw = render(wall, INTRINSICS, torch.eye(4))
    torch.testing.assert_close(raw.depth, out.depth * out.alpha, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.color, raw.color + (1 - raw.alpha)[..., None] * torch.tensor([1.0, 0.0, 0.0]))


def test_output_size_rescales_intrinsics(kernels):
    scene = random_scene(60, dtype=torch.float32, seed=8)
    big = Intrinsics(width=96, height=72, fx=80.0, fy=84.0, cx=(23.2 + 0.5) * 2 - 0.5, cy=(17.7 + 0.5) * 2 - 0.5)
    small = render(scene, big, camera_pose(torch.float32), width=48, height=36)
    direct = render(scene, INTRINSICS, camera_pose(torch.float32))
    torch.testing.assert_close(small.color, direct.color, rtol=1e-4, atol=1e-5)


def test_inputs_are_validated(kernels):
    scene = random_scene(5, dtype=torch.float32)
    with pytest.raises(ValueError, match="backend"):
        render(scene, INTRINSICS, torch.eye(4), backend="opengl")
    with pytest.raises(ValueError, match="undistort"):
        render(scene, Intrinsics(48, 36, 40, 40, 24, 18, distortion=(0.1, 0, 0, 0, 0)), torch.eye(4))
    with pytest.raises(ValueError, match="4x4"):
        render(scene, INTRINSICS, torch.eye(3))
    out = render(scene, INTRINSICS, Pose.identity())  # a Pose works too
    assert out.color.dtype == torch.float32


@pytest.mark.skipif(not gsplat_cuda_available(), reason="needs CUDA and gsplat's CUDA backend")
def test_gsplat_backend_matches_cpu(kernels):
    scene = random_scene(300, dtype=torch.float32, seed=9)
    cpu = render(scene, INTRINSICS, camera_pose(torch.float32), channels=ALL_CHANNELS, backend="cpu")
    cuda_scene = with_grad(scene.to("cuda"))
    pose = camera_pose(torch.float32).cuda().requires_grad_()
    gpu = render(cuda_scene, INTRINSICS, pose, channels=ALL_CHANNELS, backend="auto")
    assert gpu.backend == "gsplat"
    for name in ALL_CHANNELS:
        assert rel_err(getattr(gpu, name).cpu(), getattr(cpu, name)) < 1e-3, name
    torch.autograd.grad(weighted_loss(gpu, ALL_CHANNELS), params(cuda_scene) + [pose])


# -- helpers and packaging ----------------------------------------------------------------


def test_se3_exp_matches_the_matrix_exponential():
    from scipy.linalg import expm

    gen = torch.Generator().manual_seed(0)
    for scale in (1.0, 1e-3, 1e-9, 0.0):
        xi = torch.randn(6, generator=gen, dtype=torch.float64) * scale
        v, w = xi[:3].numpy(), xi[3:].numpy()
        twist = np.zeros((4, 4))
        twist[:3, :3] = [[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]]
        twist[:3, 3] = v
        np.testing.assert_allclose(se3_exp(xi).numpy(), expm(twist), atol=1e-12)
        np.testing.assert_allclose(so3_exp(xi[3:]).numpy(), expm(twist)[:3, :3], atol=1e-12)
    xi = torch.zeros(6, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(se3_exp(xi)[:3].sum(), xi)
    assert bool(torch.isfinite(grad).all())


def test_importing_the_renderer_compiles_nothing():
    code = ("import sys, gs4_slam.render, gs4_slam.gaussians, gs4_slam.map_io, gs4_slam.spatial_index; "
            "print('torch.utils.cpp_extension' in sys.modules, 'rclpy' in sys.modules)")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


def test_failed_build_falls_back_to_pytorch_with_a_warning(monkeypatch, caplog):
    from gs4_slam import ext
    from gs4_slam.render import api

    def broken_build(self, spec, verbose=False):
        raise RuntimeError("no compiler")

    monkeypatch.setattr(ext.CompiledExtension, "import_built", lambda self, spec: None)
    monkeypatch.setattr(ext.CompiledExtension, "build", broken_build)
    ext._load.cache_clear()
    try:
        with caplog.at_level("WARNING"):
            assert api.select_backend("auto", torch.device("cpu")) == "torch"
        assert "failed to build" in caplog.text and "PyTorch renderer" in caplog.text
        with pytest.raises(RuntimeError, match="unavailable"):
            api.select_backend("cpu", torch.device("cpu"))
        out = render(random_scene(10, dtype=torch.float32), INTRINSICS, torch.eye(4))
        assert out.backend == "torch" and out.color.shape == (36, 48, 3)
    finally:
        ext._load.cache_clear()
