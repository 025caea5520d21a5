"""gsplat against our pure-PyTorch splatter on CUDA: same images, same gradients; prints timings.

Self-contained; run on a CUDA machine with gsplat installed:  pytest -m gpu tests/gpu -s
(the first gsplat call JIT-compiles its CUDA extension, about two minutes.)
"""

import math
import time

import pytest
import torch

from animus3d_worker.render import make_cameras, render, resolve_backend

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cuda() -> torch.device:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    pytest.importorskip("gsplat")
    return torch.device("cuda")


def random_scene(n: int, batch: int, device, seed: int = 0):
    """n random Gaussians in the unit cube; the batch holds jittered copies (as deformed frames would)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    means = (torch.rand(n, 3, generator=g) - 0.5)
    jitter = 0.02 * torch.randn(batch, n, 3, generator=g)
    quats = torch.randn(batch, n, 4, generator=g)
    scales = torch.exp(torch.empty(batch, n, 3).uniform_(math.log(0.008), math.log(0.05), generator=g))
    opacities = torch.empty(n).uniform_(0.1, 0.9, generator=g)
    colors = torch.rand(n, 3, generator=g)
    tensors = (means[None] + jitter, quats, scales, opacities, colors)
    return [t.to(device).requires_grad_() for t in tensors]


def timed(fn, repeats: int = 5) -> float:
    """Best wall time of ``fn`` in milliseconds, after one warm-up call."""
    fn()
    torch.cuda.synchronize()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best * 1000


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0))


def render_with_grads(inputs, cams, backend, weights):
    for t in inputs:
        t.grad = None
    images, alphas = render(*inputs, cams, background=(1.0, 1.0, 1.0), backend=backend)
    ((images * weights[0]).sum() + (alphas * weights[1]).sum()).backward()
    return images.detach(), alphas.detach(), [t.grad.detach().clone() for t in inputs]


def test_auto_picks_gsplat_for_cuda_tensors(cuda):
    assert resolve_backend("auto", cuda) == "gsplat"


def test_gsplat_and_torch_agree_on_images_and_gradients(cuda):
    inputs = random_scene(2000, batch=2, device=cuda)
    lo = inputs[0].detach().amin(dim=(0, 1)).cpu().numpy()
    hi = inputs[0].detach().amax(dim=(0, 1)).cpu().numpy()
    cams = make_cameras(lo, hi, resolution=64, orbit_views=3, device=cuda)
    g = torch.Generator(device="cpu").manual_seed(1)
    weights = (torch.rand(2, 4, 64, 64, 3, generator=g).to(cuda), torch.rand(2, 4, 64, 64, 1, generator=g).to(cuda))

    img_t, a_t, grads_t = render_with_grads(inputs, cams, "torch", weights)
    img_g, a_g, grads_g = render_with_grads(inputs, cams, "gsplat", weights)
    assert img_g.shape == img_t.shape == (2, 4, 64, 64, 3) and a_g.shape == a_t.shape == (2, 4, 64, 64, 1)

    image_diff = float((img_t - img_g).abs().mean())
    alpha_diff = float((a_t - a_g).abs().mean())
    print(f"\nmean |torch - gsplat|: images {image_diff:.2e}, alphas {alpha_diff:.2e}; "
          f"max {float((img_t - img_g).abs().max()):.2e}; mean alpha {float(a_t.mean()):.3f}")
    assert float(a_t.mean()) > 0.05, "the scene should cover part of the images"
    assert image_diff < 2e-2 and alpha_diff < 2e-2

    names = ["means", "quats", "scales", "opacities", "colors"]
    sims = {name: cosine(a, b) for name, a, b in zip(names, grads_t, grads_g)}
    print("gradient cosine similarity torch vs gsplat:", {k: round(v, 4) for k, v in sims.items()})
    for name in ("means", "colors", "opacities"):
        assert sims[name] > 0.9, (name, sims[name])
    for name, grad in zip(names, grads_t):
        assert torch.isfinite(grad).all(), name


def test_packed_and_dense_gsplat_agree(cuda):
    from animus3d_worker.render.gsplat_backend import rasterize_gsplat

    means, quats, scales, opacities, colors = (t.detach() for t in random_scene(3000, batch=3, device=cuda, seed=2))
    cams = make_cameras([-0.5] * 3, [0.5] * 3, resolution=48, orbit_views=2, device=cuda)
    args = (means, quats, scales, opacities.expand(3, -1), colors.expand(3, -1, -1), cams.viewmats, cams.Ks,
            48, 48, torch.ones(3, device=cuda))
    packed, packed_a = rasterize_gsplat(*args, packed=True)
    dense, dense_a = rasterize_gsplat(*args, packed=False)
    assert torch.allclose(packed, dense, atol=1e-4) and torch.allclose(packed_a, dense_a, atol=1e-4)


def test_unbatched_inputs_keep_a_batch_of_one(cuda):
    means, quats, scales, opacities, colors = (t.detach()[0] if t.ndim == 3 else t.detach()
                                               for t in random_scene(500, batch=1, device=cuda, seed=3))
    cams = make_cameras([-0.5] * 3, [0.5] * 3, resolution=32, orbit_views=1, device=cuda)
    images, alphas = render(means, quats, scales, opacities, colors, cams)
    assert images.shape == (1, 2, 32, 32, 3) and alphas.shape == (1, 2, 32, 32, 1)


@pytest.mark.parametrize("count,frames,views,resolution", [
    (2000, 2, 4, 64),  # the agreement scene
    (24000, 4, 1, 64),  # the CPU smoke scale
    (200000, 16, 1, 256),  # a real splat, one MSD step's clip
    (200000, 8, 4, 256),
])
def test_print_timings(cuda, count, frames, views, resolution):
    inputs = random_scene(count, batch=frames, device=cuda, seed=4)
    cams = make_cameras([-0.5] * 3, [0.5] * 3, resolution=resolution, orbit_views=max(0, views - 1), device=cuda)
    cams = cams.select(list(range(views)))

    def step(backend):
        def run():
            images, alphas = render(*inputs, cams, backend=backend)
            (images.mean() + alphas.mean()).backward()
        return run

    gsplat_ms = timed(step("gsplat"))
    line = f"\n{count} Gaussians x {frames} frames x {views} views at {resolution}²: gsplat {gsplat_ms:.1f} ms"
    if count * frames * views <= 200_000:  # the torch splatter is a CPU/reference path; keep it to small cases
        line += f", torch {timed(step('torch'), repeats=2):.1f} ms"
    print(line + " (forward+backward)")
