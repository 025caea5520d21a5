"""Pure-PyTorch differentiable EWA splatting, following the semantics of gsplat's ``rasterization``.

gsplat has no CPU path, so this is the renderer on the CPU (and a reference on the GPU). Autograd
gives the gradients; everything that only decides *which* terms exist (culling, bounding boxes,
sorting, thresholds) runs without grad.

Algorithm, for B Gaussian sets seen by C cameras (I = B*C images of H*W pixels):

1. Projection (differentiable). Σ = R S Sᵀ Rᵀ from the normalised quaternion and the scales. With
   the camera rotation W and the Jacobian J of the perspective map at the camera-space mean (the
   mean's x/z and y/z clamped to 1.3x the field of view, like gsplat), the image-space covariance
   is (J W R S)(J W R S)ᵀ + eps2d·I (gsplat's 0.3 px² low-pass dilation); its inverse is the conic.
2. Culling and footprints (no grad). An (image, Gaussian) entry is dropped when its depth is not in
   (near, far), its opacity is below 1/255, or its box misses the image. The box half-sizes are
   ceil(k·σx), ceil(k·σy) with gsplat's opacity-aware k = min(3.33, sqrt(2 ln(255·opacity)));
   they are capped at ``max_radius`` pixels. A pixel belongs to the footprint when its centre
   (i + 0.5) lies in the box.
3. Contributing pairs (no grad). Entries are taken nearest first (depth sorted; images may
   interleave since they never interact), in chunks of about ``chunk_pairs`` pairs. Each chunk
   expands its entries' boxes into a flat list of (entry, pixel) pairs -- never a dense
   [pixels x Gaussians] tensor -- drops pairs whose alpha = min(0.999, opacity·exp(-½ dᵀ Σ⁻¹ d))
   is below 1/255 (gsplat's rule), sorts them by (pixel, depth) and runs the compositing
   recurrence in log space to find where each pixel ends: like gsplat, the pair that would bring
   the transmittance to 1e-4 or below and everything behind it are left out. Per-pixel log
   transmittance and "finished" flags carry from chunk to chunk, and a summed-area table of the
   finished flags lets later chunks skip, without expanding them, entries whose box holds only
   finished pixels. This early termination is what keeps the CPU cost low.
4. Compositing (differentiable), over the contributing pairs only, sorted by (pixel, depth):
   log T before a pair = segmented exclusive cumulative sum of log(1 - alpha) (one global cumsum
   in float64, minus its value at the start of the pixel's run). Weights alpha·T are scatter-added
   with the colours into the image and into the accumulated alpha A; finally C + (1 - A)·bg.

Memory: the pair expansion is bounded by ``chunk_pairs``; what autograd keeps scales with the
number of contributing pairs (about the depth complexity up to saturation, times the pixels).
Footprint half-sizes are capped at ``max_radius`` pixels, which truncates (only) Gaussians wider
than that on screen.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

ALPHA_THRESHOLD = 1.0 / 255.0  # gsplat: alphas below this are skipped
MAX_ALPHA = 0.999  # gsplat 1.5.3 clamps a single Gaussian's alpha to this
MIN_TRANSMITTANCE = 1e-4  # gsplat: a pixel is finished once T would drop to this
MAX_EXTENT_SIGMA = 3.33  # gsplat's box half-size in standard deviations (before the opacity-aware bound)
MAX_RADIUS_PX = 64  # cap on a footprint's half-size in pixels
PAIRS_PER_CHUNK = 1 << 20  # pairs expanded at once; smaller chunks skip more hidden Gaussians, larger ones pay less per chunk


def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [..., 3, 3] from (w, x, y, z) quaternions [..., 4] (normalised here)."""
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(quats.shape[:-1] + (3, 3))


def project(means, quats, scales, viewmats, Ks, width: int, height: int, near_plane: float, far_plane: float,
            eps2d: float):
    """EWA projection of B Gaussian sets into C cameras.

    Returns means2d [B,C,N,2] (pixels), conics [B,C,N,3] (a, b, c of Σ⁻¹ = [[a,b],[b,c]]),
    cov_diag [B,C,N,2] (dilated image-space variances), depths [B,C,N], in_range [B,C,N] (bool).
    """
    rot_c = viewmats[:, :3, :3]  # [C,3,3]
    means_c = torch.einsum("cij,bnj->bcni", rot_c, means) + viewmats[None, :, None, :3, 3]
    x, y, z = means_c.unbind(-1)
    in_range = (z > near_plane) & (z < far_plane)
    z = torch.where(in_range, z, torch.ones_like(z))  # keeps culled entries finite (and their grads zero)

    fx, fy = Ks[:, 0, 0][None, :, None], Ks[:, 1, 1][None, :, None]
    cx, cy = Ks[:, 0, 2][None, :, None], Ks[:, 1, 2][None, :, None]
    lim_x_pos = (width - cx) / fx + 0.3 * (0.5 * width / fx)
    lim_x_neg = cx / fx + 0.3 * (0.5 * width / fx)
    lim_y_pos = (height - cy) / fy + 0.3 * (0.5 * height / fy)
    lim_y_neg = cy / fy + 0.3 * (0.5 * height / fy)
    u = torch.minimum(torch.maximum(x / z, -lim_x_neg), lim_x_pos)
    v = torch.minimum(torch.maximum(y / z, -lim_y_neg), lim_y_pos)

    zeros = torch.zeros_like(z)
    jac = torch.stack([fx / z, zeros, -fx * u / z, zeros, fy / z, -fy * v / z], dim=-1)
    jac = jac.reshape(z.shape + (2, 3))  # [B,C,N,2,3]
    rs = quat_to_rotmat(quats) * scales[..., None, :]  # R S, [B,N,3,3]
    t = jac @ rot_c[None, :, None] @ rs[:, None]  # J W R S, [B,C,N,2,3]
    a = (t[..., 0, :] * t[..., 0, :]).sum(-1) + eps2d
    b = (t[..., 0, :] * t[..., 1, :]).sum(-1)
    c = (t[..., 1, :] * t[..., 1, :]).sum(-1) + eps2d
    det = a * c - b * b
    in_range = in_range & (det > 0)
    det = torch.where(in_range, det, torch.ones_like(det))
    conics = torch.stack([c / det, -b / det, a / det], dim=-1)
    means2d = torch.stack([fx * x / z + cx, fy * y / z + cy], dim=-1)
    return means2d, conics, torch.stack([a, c], dim=-1), means_c[..., 2], in_range


@torch.no_grad()
def footprints(means2d, cov_diag, opacities, visible, width: int, height: int, max_radius: int):
    """Inclusive pixel boxes [.., 4] = (x0, y0, x1, y1) and the updated visibility mask of every entry."""
    extent = torch.sqrt(2.0 * torch.log(opacities.clamp_min(ALPHA_THRESHOLD) / ALPHA_THRESHOLD))
    extent = extent.clamp_max(MAX_EXTENT_SIGMA)
    radius = torch.ceil(extent[..., None] * torch.sqrt(cov_diag)).clamp_max(max_radius)  # [..,2]
    lo = means2d - radius
    hi = means2d + radius
    visible = visible & (opacities >= ALPHA_THRESHOLD)
    visible = visible & (hi[..., 0] > 0) & (lo[..., 0] < width) & (hi[..., 1] > 0) & (lo[..., 1] < height)
    x0 = torch.ceil(lo[..., 0] - 0.5).clamp(0, width - 1)
    y0 = torch.ceil(lo[..., 1] - 0.5).clamp(0, height - 1)
    x1 = torch.floor(hi[..., 0] - 0.5).clamp(0, width - 1)
    y1 = torch.floor(hi[..., 1] - 0.5).clamp(0, height - 1)
    visible = visible & (x1 >= x0) & (y1 >= y0)
    return torch.stack([x0, y0, x1, y1], dim=-1).long(), visible


def _gaussian_power(table: torch.Tensor, px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """½ dᵀ Σ⁻¹ d between pixel centres (px + 0.5, py + 0.5) and the means in ``table`` columns 0-1 (conic in 2-4)."""
    dx = table[:, 0] - (px.to(table.dtype) + 0.5)
    dy = table[:, 1] - (py.to(table.dtype) + 0.5)
    return 0.5 * (table[:, 2] * dx * dx + table[:, 4] * dy * dy) + table[:, 3] * dx * dy


def _alpha(table: torch.Tensor, px: torch.Tensor, py: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(power, alpha) of each pair; ``table`` rows are (mean x, mean y, conic a, b, c, opacity, ...)."""
    power = _gaussian_power(table, px, py)
    return power, torch.clamp_max(table[:, 5] * torch.exp(-power), MAX_ALPHA)


def _segment_starts(sorted_keys: torch.Tensor) -> torch.Tensor:
    """True where a run of equal keys begins."""
    starts = torch.ones_like(sorted_keys, dtype=torch.bool)
    starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return starts


def _segment_exclusive_cumsum(values: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
    """Per-segment exclusive cumulative sum (segments marked by ``starts``), accumulated in float64."""
    wide = values.double()
    exclusive = torch.cumsum(wide, 0) - wide
    segment = torch.cumsum(starts.long(), 0) - 1
    return (exclusive - exclusive[starts][segment]).to(values.dtype)


def _chunk_bounds(counts: torch.Tensor, max_pairs: int) -> list[tuple[int, int]]:
    """Consecutive [start, end) entry ranges whose pair counts sum to at most max_pairs (one entry at least)."""
    ends = torch.cumsum(counts, 0)
    bounds, start, done = [], 0, 0
    while start < len(counts):
        end = max(int(torch.searchsorted(ends, done + max_pairs, right=True)), start + 1)
        bounds.append((start, end))
        done = int(ends[end - 1])
        start = end
    return bounds


def rasterize_torch(
    means: torch.Tensor,  # [B,N,3]
    quats: torch.Tensor,  # [B,N,4] wxyz
    scales: torch.Tensor,  # [B,N,3] activated
    opacities: torch.Tensor,  # [B,N] activated
    colors: torch.Tensor,  # [B,N,D]
    viewmats: torch.Tensor,  # [C,4,4]
    Ks: torch.Tensor,  # [C,3,3]
    width: int,
    height: int,
    background: torch.Tensor,  # [D]
    *,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    max_radius: int = MAX_RADIUS_PX,
    chunk_pairs: int = PAIRS_PER_CHUNK,
    reference: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Renders B Gaussian sets from C cameras → images [B,C,H,W,D] over ``background``, alphas [B,C,H,W,1].

    Inputs must already be batched, on one device, in one floating dtype; see the module docstring.
    ``reference``: composite through autograd (``composite_reference``) instead of the hand-written
    backward (``composite``); the two agree, the reference keeps every per-pair intermediate.
    """
    B, N = means.shape[:2]
    C = viewmats.shape[0]
    D = colors.shape[-1]
    H, W = int(height), int(width)
    num_pixels = B * C * H * W
    dtype, device = means.dtype, means.device

    means2d, conics, cov_diag, depths, visible = project(means, quats, scales, viewmats, Ks, W, H, near_plane,
                                                         far_plane, eps2d)
    opac_bc = opacities.detach()[:, None, :].expand(B, C, N)
    boxes, visible = footprints(means2d.detach(), cov_diag.detach(), opac_bc, visible, W, H, max_radius)

    with torch.no_grad():
        # (image, Gaussian) entries, flat ids into [B*C*N], nearest first (images interleave freely)
        entries = visible.reshape(-1).nonzero().squeeze(1)
        entries = entries[torch.argsort(depths.detach().reshape(-1)[entries], stable=True)]
        image = entries // N
        gaussian = (image // C) * N + entries % N  # index into [B*N]
    # one differentiable row per entry: mean (2), conic (3), opacity (1), colour (D)
    table = torch.cat([
        means2d.reshape(-1, 2)[entries],
        conics.reshape(-1, 3)[entries],
        opacities.reshape(-1)[gaussian, None],
        colors.reshape(-1, D)[gaussian],
    ], dim=1)

    pairs = _contributing_pairs(table.detach(), image, boxes.reshape(-1, 4)[entries], B * C, H, W, max(1, chunk_pairs))
    if pairs is None:
        accum = torch.zeros(num_pixels, D + 1, dtype=dtype, device=device)
    else:
        accum = (composite_reference if reference else composite)(table, *pairs, num_pixels)

    alphas = accum[:, D:].reshape(B, C, H, W, 1)
    images = accum[:, :D].reshape(B, C, H, W, D) + (1.0 - alphas) * background.to(dtype)
    return images, alphas


def composite_reference(table, owner, pixel, px, py, num_pixels: int) -> torch.Tensor:
    """Per-pixel (colour sum, alpha sum) [num_pixels, D+1] of the contributing pairs, through autograd.

    ``table`` rows are (mean x, mean y, conic a, b, c, opacity, colour…); the pairs (owner row, pixel
    id, px, py) come sorted by (pixel, depth). Autograd keeps every per-pair intermediate; ``composite``
    computes the same values with a hand-written backward and is what ``rasterize_torch`` uses.
    """
    D = table.shape[1] - 6
    rows = table.index_select(0, owner)
    _, alpha = _alpha(rows, px, py)
    log_t_before = _segment_exclusive_cumsum(torch.log1p(-alpha), _segment_starts(pixel))
    weight = (alpha * torch.exp(log_t_before))[:, None]
    accum = torch.zeros(num_pixels, D + 1, dtype=table.dtype, device=table.device)
    return accum.index_add(0, pixel, torch.cat([weight * rows[:, 6:], weight], dim=1))


def composite(table, owner, pixel, px, py, num_pixels: int) -> torch.Tensor:
    """``composite_reference``'s values with a hand-written backward: autograd sees one node that
    keeps the pairs, their alphas and transmittances, not a graph of per-pair intermediates."""
    return _Composite.apply(table, owner, pixel, px, py, num_pixels)


class _Composite(torch.autograd.Function):
    """Front-to-back compositing of sorted (pixel, depth) pairs.

    For the pairs i of one pixel, w_i = alpha_i T_i with T_i = prod_{j<i} (1 - alpha_j); the outputs
    are sum_i w_i c_i and sum_i w_i. With v_i = g_C . c_i + g_A (the loss's slope along w_i):
    dL/dc_i = w_i g_C and dL/dalpha_i = T_i v_i - (sum_{k>i} w_k v_k) / (1 - alpha_i).
    alpha = min(0.999, o exp(-power)) passes that on to the opacity (exp(-power)) and to the power
    (-alpha), zero where clamped; the power's derivatives reach the 2D mean and the conic.
    """

    @staticmethod
    def forward(ctx, table, owner, pixel, px, py, num_pixels):
        D = table.shape[1] - 6
        rows = table.index_select(0, owner)
        power, alpha = _alpha(rows, px, py)
        starts = _segment_starts(pixel)
        transmittance = torch.exp(_segment_exclusive_cumsum(torch.log1p(-alpha), starts))
        weight = alpha * transmittance
        accum = torch.zeros(num_pixels, D + 1, dtype=table.dtype, device=table.device)
        accum.index_add_(0, pixel, torch.cat([weight[:, None] * rows[:, 6:], weight[:, None]], dim=1))
        ctx.save_for_backward(table, owner, pixel, px, py, power, alpha, transmittance, starts)
        return accum

    @staticmethod
    def backward(ctx, grad_accum):
        table, owner, pixel, px, py, power, alpha, transmittance, starts = ctx.saved_tensors
        D = table.shape[1] - 6
        rows = table.index_select(0, owner)
        colour = rows[:, 6:]
        g = grad_accum.index_select(0, pixel)  # [M, D+1]
        weight = alpha * transmittance
        v = (g[:, :D] * colour).sum(1) + g[:, D]
        # sum over the pairs behind each pair of its pixel (segmented suffix sum, float64)
        q = (weight * v).double()
        inclusive = torch.cumsum(q, 0)
        segment = torch.cumsum(starts.long(), 0) - 1
        last = torch.ones_like(starts)  # True at the last pair of each pixel
        last[:-1] = starts[1:]
        ends = inclusive[last]
        behind = (ends[segment] - inclusive).to(alpha.dtype)
        d_alpha = transmittance * v - behind / (1.0 - alpha)
        raw = rows[:, 5] * torch.exp(-power)
        live = (raw <= MAX_ALPHA).to(alpha.dtype)
        d_raw = d_alpha * live
        d_power = -d_raw * raw
        dx = rows[:, 0] - (px.to(table.dtype) + 0.5)
        dy = rows[:, 1] - (py.to(table.dtype) + 0.5)
        grad_rows = torch.stack([
            d_power * (rows[:, 2] * dx + rows[:, 3] * dy),
            d_power * (rows[:, 4] * dy + rows[:, 3] * dx),
            d_power * 0.5 * dx * dx,
            d_power * dx * dy,
            d_power * 0.5 * dy * dy,
            d_raw * torch.exp(-power),
        ], dim=1)
        grad_rows = torch.cat([grad_rows, weight[:, None] * g[:, :D]], dim=1)
        grad_table = torch.zeros_like(table).index_add_(0, owner, grad_rows)
        return grad_table, None, None, None, None, None


def _unfinished_counts(finished: torch.Tensor, image, box) -> torch.Tensor:
    """How many unfinished pixels each entry's box covers (summed-area table of ``finished`` [I,H,W])."""
    open_px = F.pad((~finished).to(torch.int32).cumsum(1).cumsum(2), (1, 0, 1, 0))  # [I, H+1, W+1]
    x0, y0, x1, y1 = box.unbind(1)
    return (open_px[image, y1 + 1, x1 + 1] - open_px[image, y0, x1 + 1]
            - open_px[image, y1 + 1, x0] + open_px[image, y0, x0])


@torch.no_grad()
def _contributing_pairs(table, image, box, images: int, H: int, W: int, chunk_pairs: int):
    """Every (entry, pixel) pair that gsplat's compositing loop would use, sorted by (pixel, depth).

    Returns (owner, pixel id, px, py), ``owner`` indexing the entries (rows of ``table``), or None.
    Entries arrive nearest first and are handled in chunks of about ``chunk_pairs`` pairs; the log
    transmittance and the finished flags of every pixel carry from chunk to chunk, and an entry
    whose box holds only finished pixels is skipped without expanding it (early termination).
    """
    device = table.device
    box_w = box[:, 2] - box[:, 0] + 1
    counts = box_w * (box[:, 3] - box[:, 1] + 1)
    log_t = torch.zeros(images * H * W, dtype=torch.float64, device=device)
    finished = torch.zeros(images, H, W, dtype=torch.bool, device=device)
    found = []
    for start, end in _chunk_bounds(counts, chunk_pairs):
        ids = torch.arange(start, end, device=device)
        if start > 0:  # some pixels may have finished: drop entries that cannot contribute any more
            ids = ids[_unfinished_counts(finished, image[ids], box[ids]) > 0]
            if ids.numel() == 0:
                continue
        chunk = _chunk_pairs(table, ids, image, box, box_w, counts, H, W, log_t, finished.view(-1))
        if chunk is not None:
            found.append(chunk)
    if not found:
        return None
    owner, pixel, px, py = (torch.cat(parts) for parts in zip(*found))
    order = torch.argsort(pixel, stable=True)  # chunks come nearest first, so this orders by (pixel, depth)
    return owner[order], pixel[order], px[order], py[order]


def _chunk_pairs(table, ids, image, box, box_w, counts, H: int, W: int, log_t, finished):
    """The contributing pairs of the entries ``ids`` (nearest first): (owner, pixel id, px, py), or None.

    Pairs with alpha < 1/255, on finished pixels, or from the pair that would bring a pixel's
    transmittance to 1e-4 onwards are left out. ``log_t`` and ``finished`` are updated in place.
    """
    counts = counts[ids]
    total = int(counts.sum())
    if total == 0:
        return None
    device = table.device
    local = torch.repeat_interleave(torch.arange(len(ids), device=device), counts, output_size=total)
    owner = ids[local]
    offset = torch.arange(total, device=device) - (torch.cumsum(counts, 0) - counts)[local]
    width = box_w[owner]
    dy = torch.div(offset, width, rounding_mode="floor")
    px = box[owner, 0] + offset - dy * width
    py = box[owner, 1] + dy
    pixel = image[owner] * (H * W) + py * W + px

    power, alpha = _alpha(table.index_select(0, owner), px, py)
    keep = ((power >= 0) & (alpha >= ALPHA_THRESHOLD) & ~finished[pixel]).nonzero().squeeze(1)
    owner, pixel, px, py, alpha = owner[keep], pixel[keep], px[keep], py[keep], alpha[keep]
    if owner.numel() == 0:
        return None

    # owner ids grow with depth, so (pixel, owner) orders the pairs by (pixel, depth)
    order = torch.argsort(pixel * len(table) + owner)
    owner, pixel, px, py, alpha = owner[order], pixel[order], px[order], py[order], alpha[order]

    log1m = torch.log1p(-alpha.double())
    log_t_after = log_t[pixel] + _segment_exclusive_cumsum(log1m, _segment_starts(pixel)) + log1m
    alive = log_t_after > math.log(MIN_TRANSMITTANCE)
    finished[pixel[~alive]] = True
    keep = alive.nonzero().squeeze(1)
    log_t.index_add_(0, pixel[keep], log1m[keep])
    if keep.numel() == 0:
        return None
    return owner[keep], pixel[keep], px[keep], py[keep]
