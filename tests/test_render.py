"""Cameras and the pure-PyTorch splatter: conventions, compositing, gradients, agreement with a dense reference."""

import math

import numpy as np
import pytest
import torch

from animus3d_worker.render import CameraError, Cameras, RenderError, make_cameras, render, resolve_backend
from animus3d_worker.render.torch_splat import rasterize_torch

UNIT_LO, UNIT_HI = np.array([-1.0, -1.0, -1.0]), np.array([1.0, 1.0, 1.0])


def gaussians(positions, scale=0.1, opacity=0.8, color=(1.0, 0.0, 0.0), dtype=torch.float32):
    """Isotropic Gaussians at ``positions`` ([N,3]) as render inputs (unbatched)."""
    means = torch.tensor(positions, dtype=dtype).reshape(-1, 3)
    n = means.shape[0]
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=dtype).expand(n, 4).clone()
    scales = torch.full((n, 3), scale, dtype=dtype)
    opacities = torch.as_tensor(opacity, dtype=dtype).expand(n).clone()
    colors = torch.as_tensor(color, dtype=dtype).reshape(-1, 3).expand(n, 3).clone()
    return means, quats, scales, opacities, colors


def random_scene(n, seed, dtype=torch.float32, batch=None):
    g = torch.Generator().manual_seed(seed)
    shape = (batch, n) if batch else (n,)
    means = (torch.rand(*shape, 3, generator=g, dtype=dtype) - 0.5) * 1.4
    quats = torch.randn(*shape, 4, generator=g, dtype=dtype)
    scales = torch.exp(torch.empty(*shape, 3, dtype=dtype).uniform_(math.log(0.03), math.log(0.2), generator=g))
    opacities = torch.empty(*shape, dtype=dtype).uniform_(0.2, 0.95, generator=g)
    colors = torch.rand(*shape, 3, generator=g, dtype=dtype)
    return means, quats, scales, opacities, colors


def project_points(cams: Cameras, points: torch.Tensor) -> torch.Tensor:
    """Pixel coordinates [C, P, 2] of world points [P, 3] (pixel centres at i + 0.5)."""
    cam = torch.einsum("cij,pj->cpi", cams.viewmats[:, :3, :3], points) + cams.viewmats[:, None, :3, 3]
    uv = torch.einsum("cij,cpj->cpi", cams.Ks, cam)
    return uv[..., :2] / uv[..., 2:3]


# ---- cameras ---------------------------------------------------------------------------------

def test_front_camera_looks_along_plus_y_with_z_up():
    cams = make_cameras(UNIT_LO, UNIT_HI, resolution=32, orbit_views=4)
    rot = cams.viewmats[0, :3, :3]
    assert torch.allclose(rot[2], torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)  # forward = +Y
    assert torch.allclose(rot[1], torch.tensor([0.0, 0.0, -1.0]), atol=1e-6)  # image down = -Z
    assert torch.allclose(rot[0], torch.tensor([1.0, 0.0, 0.0]), atol=1e-6)  # image right = +X
    eye = cams.centres()[0]
    assert eye[1] < -1.0 and abs(eye[0]) < 1e-5 and abs(eye[2]) < 1e-5


def test_front_view_puts_plus_z_up_and_plus_x_right():
    cams = make_cameras(UNIT_LO, UNIT_HI, resolution=32, orbit_views=0)
    images, alphas = render(*gaussians([[0.0, 0.0, 0.6], [0.6, 0.0, 0.0]], opacity=0.9), cams)
    assert images.shape == (1, 1, 32, 32, 3) and alphas.shape == (1, 1, 32, 32, 1)
    a = alphas[0, 0, :, :, 0]
    top_blob = a[:, 12:20]  # central columns: the +Z Gaussian
    assert top_blob[:16].sum() > 10 * top_blob[16:].sum()
    right_blob = a[12:20, :]  # central rows: the +X Gaussian
    assert right_blob[:, 16:].sum() > 10 * right_blob[:, :16].sum()


def test_orbit_cameras_centre_the_bbox_and_frame_it():
    lo, hi = np.array([0.5, 2.0, -1.0]), np.array([1.5, 4.0, 3.0])
    cams = make_cameras(lo, hi, resolution=64, orbit_views=6, elevation_deg=20.0)
    assert len(cams) == 7
    centre = torch.tensor((lo + hi) / 2, dtype=torch.float32)
    uv = project_points(cams, centre[None])[:, 0]
    assert torch.allclose(uv, torch.full_like(uv, 32.0), atol=1e-3)
    corners = torch.tensor([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])],
                           dtype=torch.float32)
    uv = project_points(cams, corners)
    assert bool(((uv > 0) & (uv < 64)).all()), "every bbox corner is in view"
    distances = (cams.centres() - centre).norm(dim=1)
    assert torch.allclose(distances, distances[0].expand_as(distances), rtol=1e-5)
    offsets = cams.centres()[1:] - centre
    elevations = torch.rad2deg(torch.asin(offsets[:, 2] / offsets.norm(dim=1)))
    assert torch.allclose(elevations, torch.full_like(elevations, 20.0), atol=1e-3)
    azimuths = torch.atan2(offsets[:, 0], -offsets[:, 1])
    steps = torch.remainder(torch.diff(azimuths), 2 * math.pi)
    assert torch.allclose(steps, torch.full_like(steps, 2 * math.pi / 6), atol=1e-4)


def test_camera_select_and_to_keep_size_and_order():
    cams = make_cameras(UNIT_LO, UNIT_HI, resolution=16, orbit_views=4)
    picked = cams.select(torch.tensor([3, 0]))
    assert len(picked) == 2 and picked.width == 16 and picked.height == 16
    assert torch.equal(picked.viewmats[1], cams.viewmats[0]) and torch.equal(picked.viewmats[0], cams.viewmats[3])
    assert cams.to("cpu").viewmats.device.type == "cpu"
    with pytest.raises(CameraError):
        cams.select([5])


@pytest.mark.parametrize("kwargs", [
    dict(bbox_min=[0, 0], bbox_max=[1, 1, 1]),
    dict(bbox_min=[1, 1, 1], bbox_max=[0, 0, 0]),
    dict(bbox_min=[0, 0, 0], bbox_max=[1, 1, 1], resolution=0),
    dict(bbox_min=[0, 0, 0], bbox_max=[1, 1, 1], elevation_deg=90.0),
])
def test_bad_camera_parameters_raise(kwargs):
    with pytest.raises(CameraError):
        make_cameras(**kwargs)


# ---- rendering semantics ---------------------------------------------------------------------

def test_single_gaussian_renders_a_centred_blob_with_the_expected_profile():
    cams = make_cameras(UNIT_LO, UNIT_HI, resolution=33, orbit_views=0)  # odd size: centre pixel = image centre
    opacity, color, scale = 0.7, torch.tensor([0.2, 0.9, 0.4]), 0.1
    images, alphas = render(*gaussians([[0.0, 0.0, 0.0]], scale=scale, opacity=opacity, color=color), cams)
    img, a = images[0, 0], alphas[0, 0, :, :, 0]
    assert a.argmax() == 16 * 33 + 16
    peak = opacity * color + (1 - opacity) * torch.ones(3)
    assert torch.allclose(img[16, 16], peak, atol=1e-5)
    assert torch.allclose(a, a.flip(0), atol=1e-6) and torch.allclose(a, a.flip(1), atol=1e-6)
    # profile: alpha = opacity * exp(-k^2 / 2(σ² + 0.3)) with σ = f·s/d pixels
    focal = float(cams.Ks[0, 0, 0])
    depth = float(cams.viewmats[0, 2, 3])
    var = (focal * scale / depth) ** 2 + 0.3
    for k in (1, 2, 3):
        assert a[16, 16 + k].item() == pytest.approx(opacity * math.exp(-k * k / (2 * var)), rel=1e-4)
    assert torch.allclose(img[0, 0], torch.ones(3)) and a[0, 0] == 0


def test_nearer_gaussian_occludes_regardless_of_input_order():
    cams = make_cameras(UNIT_LO, UNIT_HI, resolution=17, orbit_views=0)
    red, blue = (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)
    near, far = [0.0, -0.5, 0.0], [0.0, 0.5, 0.0]  # the front camera is on -Y
    colors = torch.tensor([red, blue])
    for order in ([0, 1], [1, 0]):
        means, quats, scales, opac, _ = gaussians([near, far], opacity=0.9)
        images, _ = render(means[order], quats, scales, opac, colors[order], cams)
        centre = images[0, 0, 8, 8]
        assert centre[0] > 0.85 and centre[2] < 0.15, centre
    means, quats, scales, opac, _ = gaussians([far, near], opacity=0.9)
    images, _ = render(means, quats, scales, opac, colors, cams)
    assert images[0, 0, 8, 8, 2] > 0.85 and images[0, 0, 8, 8, 0] < 0.15


def test_gaussians_behind_the_camera_leave_the_background():
    cams = make_cameras(UNIT_LO, UNIT_HI, resolution=16, orbit_views=0)
    eye_y = float(cams.centres()[0, 1])
    images, alphas = render(*gaussians([[0.0, eye_y - 1.0, 0.0], [0.0, eye_y, 0.0]]), cams, background=(0.1, 0.2, 0.3))
    assert torch.allclose(images, torch.tensor([0.1, 0.2, 0.3]).expand_as(images))
    assert alphas.abs().max() == 0


def dense_reference(means, quats, scales, opacities, colors, cams, background):
    """Brute force: every pixel against every Gaussian, explicit 3x3 covariances, front-to-back loop."""
    from animus3d_worker.render.torch_splat import quat_to_rotmat

    H, W = cams.height, cams.width
    ys, xs = torch.meshgrid(torch.arange(H, dtype=means.dtype) + 0.5, torch.arange(W, dtype=means.dtype) + 0.5,
                            indexing="ij")
    out_img, out_alpha = [], []
    for c in range(len(cams)):
        view, K = cams.viewmats[c].to(means.dtype), cams.Ks[c].to(means.dtype)
        R, t = view[:3, :3], view[:3, 3]
        rs = quat_to_rotmat(quats) * scales[:, None, :]
        cov_c = R @ (rs @ rs.transpose(1, 2)) @ R.T
        p = means @ R.T + t
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
        T = torch.ones(H, W, dtype=means.dtype)
        done = torch.zeros(H, W, dtype=torch.bool)
        img = torch.zeros(H, W, 3, dtype=means.dtype)
        for g in torch.argsort(p[:, 2]).tolist():
            x, y, z = p[g]
            if z <= 0.01:
                continue
            J = torch.stack([torch.stack([fx / z, 0 * z, -fx * x / z**2]),
                             torch.stack([0 * z, fy / z, -fy * y / z**2])])
            cov2 = J @ cov_c[g] @ J.T + 0.3 * torch.eye(2, dtype=means.dtype)
            conic = torch.linalg.inv(cov2)
            dx, dy = xs - (fx * x / z + cx), ys - (fy * y / z + cy)
            power = 0.5 * (conic[0, 0] * dx * dx + conic[1, 1] * dy * dy) + conic[0, 1] * dx * dy
            alpha = torch.clamp(opacities[g] * torch.exp(-power), max=0.999)
            use = (alpha >= 1 / 255) & ~done
            next_t = T * (1 - alpha)
            done = done | (use & (next_t <= 1e-4))
            use = use & ~done
            img = img + torch.where(use[..., None], (alpha * T)[..., None] * colors[g], torch.zeros(()))
            T = torch.where(use, next_t, T)
        out_img.append(img + T[..., None] * background)
        out_alpha.append(1 - T)
    return torch.stack(out_img), torch.stack(out_alpha)[..., None]


def test_matches_a_dense_brute_force_reference():
    means, quats, scales, opac, colors = random_scene(40, seed=3, dtype=torch.float64)
    opac[:10] = 0.995  # some nearly opaque ones so early termination matters
    cams = make_cameras(UNIT_LO, UNIT_HI, resolution=20, orbit_views=3)
    bg = torch.tensor([0.3, 0.6, 0.9], dtype=torch.float64)
    images, alphas = render(means, quats, scales, opac, colors, cams, background=bg)
    ref_images, ref_alphas = dense_reference(means, quats, scales, opac, colors, cams, bg)
    assert alphas.max() > 0.9
    assert torch.allclose(images[0], ref_images, atol=1e-9)
    assert torch.allclose(alphas[0], ref_alphas, atol=1e-9)


def test_chunking_does_not_change_the_result():
    means, quats, scales, opac, colors = random_scene(300, seed=4, batch=2)
    cams = make_cameras(UNIT_LO, UNIT_HI, resolution=24, orbit_views=2)
    args = (means, quats, scales, opac, colors, cams.viewmats, cams.Ks, 24, 24, torch.ones(3))
    whole, whole_a = rasterize_torch(*args, chunk_pairs=1 << 24)
    chunked, chunked_a = rasterize_torch(*args, chunk_pairs=50)
    assert torch.allclose(whole, chunked, atol=1e-5) and torch.allclose(whole_a, chunked_a, atol=1e-5)


def test_batches_render_independently_and_unbatched_inputs_broadcast():
    means, quats, scales, opac, colors = random_scene(60, seed=5)
    cams = make_cameras(UNIT_LO, UNIT_HI, resolution=16, orbit_views=2)
    shifted = means + torch.tensor([0.2, 0.0, 0.0])
    batch_means = torch.stack([means, shifted])
    images, alphas = render(batch_means, quats, scales, opac, colors, cams)  # quats..colors unbatched
    assert images.shape == (2, 3, 16, 16, 3) and alphas.shape == (2, 3, 16, 16, 1)
    single, _ = render(shifted, quats, scales, opac, colors, cams)
    assert single.shape == (1, 3, 16, 16, 3)
    assert torch.allclose(images[1], single[0], atol=1e-6)
    assert not torch.allclose(images[0], images[1], atol=1e-3)
    assert images.min() >= 0 and images.max() <= 1 + 1e-6


# ---- gradients -------------------------------------------------------------------------------

def test_gradients_reach_every_input_and_are_finite():
    inputs = [t.requires_grad_() for t in random_scene(80, seed=6, batch=2)]
    cams = make_cameras(UNIT_LO, UNIT_HI, resolution=24, orbit_views=2)
    images, alphas = render(*inputs, cams)
    weights = torch.rand(images.shape, generator=torch.Generator().manual_seed(0))
    ((images * weights).sum() + alphas.sum()).backward()
    for name, t in zip(["means", "quats", "scales", "opacities", "colors"], inputs):
        assert t.grad is not None and torch.isfinite(t.grad).all(), name
        assert t.grad.abs().sum() > 0, name


def test_gradients_match_finite_differences():
    g = torch.Generator().manual_seed(7)
    means = torch.tensor([[0.05, 0.0, 0.02], [-0.1, 0.2, 0.1], [0.1, -0.2, -0.05]], dtype=torch.float64)
    quats = torch.randn(3, 4, generator=g, dtype=torch.float64)
    scales = torch.tensor([[0.15, 0.08, 0.1], [0.2, 0.1, 0.12], [0.1, 0.1, 0.25]], dtype=torch.float64)
    opac = torch.tensor([0.6, 0.7, 0.5], dtype=torch.float64)
    colors = torch.rand(3, 3, generator=g, dtype=torch.float64)
    cams = make_cameras([-0.5] * 3, [0.5] * 3, resolution=9, orbit_views=1)
    weights = torch.rand(1, 2, 9, 9, 3, generator=g, dtype=torch.float64)

    def loss(m, q, s, o, c):
        images, alphas = render(m, q, s, o, c, cams, background=(0.2, 0.5, 0.8))
        return (images * weights).sum() + alphas.sum()

    inputs = tuple(t.clone().requires_grad_() for t in (means, quats, scales, opac, colors))
    assert torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
@pytest.mark.parametrize("seed", [11, 12])
def test_hand_written_backward_matches_the_autograd_reference(dtype, tol, seed):
    """The renderer's compositing (hand-written backward) against ``composite_reference`` (autograd
    through every per-pair step) on random scenes: same images and alphas, same gradients for every
    input, with near-opaque Gaussians (early termination, the 0.999 alpha clamp) and several chunks."""
    means, quats, scales, opac, colors = random_scene(300, seed=seed, dtype=dtype, batch=2)
    opac[:, :30] = 0.9999
    cams = make_cameras(UNIT_LO, UNIT_HI, resolution=24, orbit_views=2)
    weights = torch.rand(2, 3, 24, 24, 3, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    results = []
    for reference in (True, False):
        inputs = [t.clone().requires_grad_() for t in (means, quats, scales, opac, colors)]
        images, alphas = rasterize_torch(*inputs, cams.viewmats.to(dtype), cams.Ks.to(dtype), 24, 24,
                                         torch.tensor([0.2, 0.5, 0.8], dtype=dtype), chunk_pairs=700,
                                         reference=reference)
        loss = (images * weights).sum() + (alphas * alphas).sum()
        results.append((images, alphas, torch.autograd.grad(loss, inputs)))
    (ref_images, ref_alphas, ref_grads), (images, alphas, grads) = results
    assert ref_alphas.max() > 0.99
    assert torch.allclose(images, ref_images, atol=tol) and torch.allclose(alphas, ref_alphas, atol=tol)
    for name, ref, got in zip(["means", "quats", "scales", "opacities", "colors"], ref_grads, grads):
        assert ref.abs().max() > 0, name
        assert torch.allclose(got, ref, atol=tol * float(ref.abs().max()), rtol=0), name


# ---- inputs and backends ---------------------------------------------------------------------

def test_bad_inputs_raise_render_errors():
    means, quats, scales, opac, colors = gaussians([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0]])
    cams = make_cameras(UNIT_LO, UNIT_HI, resolution=8, orbit_views=0)
    with pytest.raises(RenderError, match="quats"):
        render(means, quats[:, :3], scales, opac, colors, cams)
    with pytest.raises(RenderError, match="number of Gaussians"):
        render(means, quats, scales, opac[:1], colors, cams)
    with pytest.raises(RenderError, match="batch size"):
        render(means.expand(2, -1, -1), quats.expand(3, -1, -1), scales, opac, colors, cams)
    with pytest.raises(RenderError, match="background"):
        render(means, quats, scales, opac, colors, cams, background=(1.0, 1.0))
    with pytest.raises(RenderError, match="backend"):
        render(means, quats, scales, opac, colors, cams, backend="opengl")
    with pytest.raises(RenderError, match="CUDA"):
        render(means, quats, scales, opac, colors, cams, backend="gsplat")


def test_auto_backend_is_torch_on_cpu():
    assert resolve_backend("auto", torch.device("cpu")) == "torch"


def test_character_scale_scene_renders_fast_enough_on_cpu():
    """Performance smoke: 24k Gaussians, 4 frames x 1 camera at 32² and 64², forward + backward."""
    import time

    from animus3d_shared.samples import make_character
    from animus3d_worker.splat_tensors import SplatTensors

    splat = SplatTensors.from_splat(make_character(count=24000), "cpu")
    lo, hi = splat.bbox
    frames = 4
    noise = 0.01 * torch.randn(frames, splat.count, 3, generator=torch.Generator().manual_seed(0))
    for resolution in (32, 64):
        cams = make_cameras(lo, hi, resolution=resolution, orbit_views=0)
        means = (splat.means[None] + noise).requires_grad_()
        colors = splat.colors.clone().requires_grad_()
        start = time.perf_counter()
        images, alphas = render(means, splat.quats, splat.scales, splat.opacities, colors, cams)
        images.mean().backward()
        elapsed = time.perf_counter() - start
        print(f"{resolution}²: forward+backward {elapsed * 1000:.0f} ms")
        assert images.shape == (frames, 1, resolution, resolution, 3)
        assert 0.05 < alphas.mean() < 0.9
        assert torch.isfinite(means.grad).all() and means.grad.abs().sum() > 0


def test_a_subset_keeps_order_and_grows_to_cover_the_frame():
    import math

    from animus3d_shared.samples import make_character
    from animus3d_worker.render import make_cameras, render
    from animus3d_worker.splat_tensors import SplatTensors

    whole = SplatTensors.from_splat(make_character(seed=0, count=6000), "cpu")
    part = whole.subset(1000, seed=4)
    assert part.count == 1000 and whole.subset(6000) is whole and whole.subset(0) is whole
    index = torch.cdist(part.means, whole.means).argmin(dim=1)
    assert bool((index[1:] > index[:-1]).all()), "the subset keeps the splat's order"
    torch.testing.assert_close(part.log_scales, whole.log_scales[index] + 0.5 * math.log(6.0))
    assert torch.equal(part.colors, whole.colors[index]) and torch.equal(part.subset(1000, seed=4).means, part.means)
    lo, hi = whole.bbox
    cams = make_cameras(lo, hi, resolution=48, orbit_views=0, device="cpu")

    def image(s, grow=0.0):
        return render(s.means[None], s.quats[None], torch.exp(s.log_scales + grow)[None], s.opacities, s.colors, cams)[0]

    def psnr(a, b):
        return -10 * math.log10(float(((a - b) ** 2).mean()))

    full = image(whole)
    # Grown, the sixth of the splat draws the frame far closer to the whole splat than left as it was.
    assert psnr(image(part), full) > 26.0
    assert psnr(image(part), full) > psnr(image(part, grow=-0.5 * math.log(6.0)), full) + 3.0
