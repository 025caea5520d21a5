"""Motion-quality evaluation: classify the dominant motion of an Animation and score its quality.

The classifier reads only per-Gaussian trajectories (plus part labels where the asset has them):

1. a robust per-frame similarity fit (Umeyama: scale, rotation, translation) of the rest means
   onto each frame gives the global motion — rotation angle and axis (vertical → spin, horizontal
   → sway if it oscillates back, tilt if it stays), translation (vertical → jump, lateral → slide),
   scale (grow/shrink);
2. after removing that global motion, a rigid fit per labelled part gives how much each part
   turns (head → nod, one arm → wave, legs → walk);
3. the motion with the largest score wins; below ``STILL_THRESHOLD`` everything is "still".

Quality metrics: motion magnitude, appearance preservation (PSNR/SSIM of front renders with the
recovered global motion removed against the static render, and of frame 0 against the static
asset), temporal smoothness (mean second difference) and distortion (ARAP residual).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from animus3d_shared.deformation import Animation
from animus3d_shared.splat import GaussianSplat

STILL_THRESHOLD = 0.06  # scores are in radians (or equivalent): below this nothing moved
PSNR_CAP = 60.0  # dB: identical renders score this instead of infinity


class EvaluationError(ValueError):
    """Bad evaluation input (suite file, case, ablation name)."""


# ---- global and part fits --------------------------------------------------------------------------


def similarity_fit(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None
                   ) -> tuple[float, np.ndarray, np.ndarray]:
    """Umeyama fit ``dst ≈ s·R·src + t``: returns (s, R [3,3], t [3])."""
    w = np.ones(len(src)) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    mu_s, mu_d = w @ src, w @ dst
    a, b = src - mu_s, dst - mu_d
    cov = (b * w[:, None]).T @ a
    u, sig, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    fix = np.diag([1.0, 1.0, d])
    rot = u @ fix @ vt
    var = float(w @ (a * a).sum(1))
    scale = float((sig * np.diag(fix)).sum() / max(var, 1e-12))
    return scale, rot, mu_d - scale * rot @ mu_s


def robust_similarity_fit(src: np.ndarray, dst: np.ndarray, keep: float = 0.7):
    """Similarity fit refitted on the ``keep`` fraction of points it explains best (ignores a waving arm)."""
    s, r, t = similarity_fit(src, dst)
    residual = np.linalg.norm(dst - (s * src @ r.T + t), axis=1)
    chosen = residual <= np.quantile(residual, keep)
    return similarity_fit(src[chosen], dst[chosen])


def rotation_vector(r: np.ndarray) -> np.ndarray:
    """Axis × angle of a rotation matrix (angle in [0, π])."""
    angle = math.acos(float(np.clip((np.trace(r) - 1) / 2, -1.0, 1.0)))
    if angle < 1e-9:
        return np.zeros(3)
    axis = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    n = np.linalg.norm(axis)
    if n < 1e-9:  # angle ≈ π: axis from the symmetric part
        m = (r + np.eye(3)) / 2
        axis = m[int(np.argmax(np.diag(m)))]
        n = np.linalg.norm(axis)
    return axis / n * angle


@dataclass
class MotionFeatures:
    """What the classifier measured (all per frame over the clip, frame 0 first)."""

    rotvecs: np.ndarray  # [T, 3] global rotation vectors
    translations: np.ndarray  # [T, 3] of the base point (bottom centre), in object heights
    log_scales: np.ndarray  # [T]
    part_angles: dict[str, np.ndarray]  # part -> [T] rotation angle after removing the global motion
    height: float


def motion_features(rest_means: np.ndarray, frames_means: np.ndarray, part_ids: np.ndarray | None = None,
                    part_names: tuple[str, ...] = ()) -> MotionFeatures:
    """Global similarity per frame and per-part residual rotations from trajectories [T, N, 3]."""
    rest = np.asarray(rest_means, np.float64)
    height = float(max(np.ptp(rest[:, 2]), np.ptp(rest, axis=0).max() * 0.5, 1e-6))
    lo, hi = rest.min(0), rest.max(0)
    base = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])  # rotations/scalings pivot here
    T = len(frames_means)
    rotvecs, trans, logs = np.zeros((T, 3)), np.zeros((T, 3)), np.zeros(T)
    parts: dict[str, np.ndarray] = {n: np.zeros(T) for n in part_names}
    for t in range(T):
        cur = np.asarray(frames_means[t], np.float64)
        s, r, tr = robust_similarity_fit(rest, cur)
        rotvecs[t] = rotation_vector(r)
        logs[t] = math.log(max(s, 1e-6))
        trans[t] = (s * r @ base + tr - base) / height  # where the base point went
        if part_ids is not None and part_names:
            aligned = ((cur - tr) @ r) / s  # frame t with the global motion undone
            for k, name in enumerate(part_names):
                mask = part_ids == k
                if mask.sum() >= 4:
                    _, pr, _ = similarity_fit(rest[mask], aligned[mask])
                    parts[name][t] = np.linalg.norm(rotation_vector(pr))
    return MotionFeatures(rotvecs, trans, logs, parts, height)


def _returns(series: np.ndarray) -> bool:
    """True when a signal goes out and comes back (oscillates) rather than ending at its extreme."""
    peak = np.abs(series).max()
    return peak > 0 and abs(series[-1]) < 0.5 * peak


def motion_scores(f: MotionFeatures) -> dict[str, float]:
    """A score per motion label (radian-like units); the largest is the dominant motion."""
    angles = np.linalg.norm(f.rotvecs, axis=1)
    vertical = np.abs(f.rotvecs[:, 2])
    horizontal = np.linalg.norm(f.rotvecs[:, :2], axis=1)
    roll = f.rotvecs[:, 1] if np.abs(f.rotvecs[:, 1]).max() >= np.abs(f.rotvecs[:, 0]).max() else f.rotvecs[:, 0]
    rock = float(horizontal.max())
    up = float(np.clip(f.translations[:, 2], 0, None).max())
    lateral = f.translations[:, 0]
    scores = {label: 0.0 for label in
              ("still", "spin", "jump", "sway", "nod", "wave_left", "wave_right", "walk", "tilt", "grow",
               "shrink", "slide_left", "slide_right")}
    scores["spin"] = float(vertical.max()) * (1.0 if angles.max() > 0 else 0.0)
    if _returns(roll):
        scores["sway"] = rock
    else:
        scores["tilt"] = rock
    scores["jump"] = 2.0 * up
    scores["slide_left"] = 2.0 * float(max(-lateral.min(), 0.0)) if abs(lateral.min()) > abs(lateral.max()) else 0.0
    scores["slide_right"] = 2.0 * float(max(lateral.max(), 0.0)) if abs(lateral.max()) >= abs(lateral.min()) else 0.0
    final_scale = float(f.log_scales[-1]) if abs(f.log_scales[-1]) >= 0.5 * np.abs(f.log_scales).max() else 0.0
    peak_scale = f.log_scales[np.argmax(np.abs(f.log_scales))]
    scores["grow" if peak_scale > 0 else "shrink"] = 2.0 * abs(float(peak_scale)) if final_scale else abs(float(peak_scale))
    part = {name: float(a.max()) for name, a in f.part_angles.items()}
    legs = [v for n, v in part.items() if n.endswith("leg")]
    if "head" in part:
        scores["nod"] = part["head"]
    left, right = part.get("left_arm", 0.0), part.get("right_arm", 0.0)
    if left > 2 * right:
        scores["wave_left"] = left
    if right > 2 * left:
        scores["wave_right"] = right
    if legs and min(legs) > 0.5 * max(legs):
        scores["walk"] = float(np.mean(legs)) * 1.2
    scores["still"] = STILL_THRESHOLD
    return scores


# Regions of an upright object found from its rest geometry alone (+Z up, facing −Y, its own left
# at +X), named as the part labels the scores read: a PLY without part labels still gets part scores.
REGION_NAMES = ("head", "left_arm", "right_arm", "left_leg", "right_leg")


def region_parts(rest_means: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """(ids [N] into ``REGION_NAMES``, −1 for the rest; ``REGION_NAMES``) from positions alone:
    the top centre is the head, the outer sides of the upper body the arms, the lower sides the legs."""
    rest = np.asarray(rest_means, np.float64)
    lo, hi = np.percentile(rest, 1, axis=0), np.percentile(rest, 99, axis=0)
    height = max(hi[2] - lo[2], 1e-9)
    half = max((hi[0] - lo[0]) / 2, 1e-9)
    z = (rest[:, 2] - lo[2]) / height
    x = (rest[:, 0] - (lo[0] + hi[0]) / 2) / half
    ids = np.full(len(rest), -1, np.int64)
    ids[(z > 0.82) & (np.abs(x) < 0.5)] = 0
    ids[(z > 0.3) & (z < 0.82) & (x > 0.68)] = 1
    ids[(z > 0.3) & (z < 0.82) & (x < -0.68)] = 2
    ids[(z < 0.3) & (x > 0.05)] = 3
    ids[(z < 0.3) & (x < -0.05)] = 4
    return ids, REGION_NAMES


def up_down_cycles(series: np.ndarray, min_swing: float) -> int:
    """How many times ``series`` rises by at least ``min_swing`` and falls back by as much."""
    cycles, low, high, rising = 0, float(series[0]), float(series[0]), True
    for value in map(float, series[1:]):
        if rising:
            low = min(low, value) if high - low < min_swing else low
            high = max(high, value)
            if high - low >= min_swing and high - value >= min_swing:
                rising, low = False, value
        else:
            low = min(low, value)
            if value - low >= min_swing:
                cycles += 1
                rising, high = True, value
    return cycles + (0 if rising else 1)


def hand_cycles(splat: GaussianSplat, animation: Animation, side: str = "right", min_swing: float = 0.05) -> int:
    """Up-and-down cycles of a hand, label-free: the lowest tenth of the ``side`` arm region (the
    object's own side), its mean height per frame with the global motion undone; ``min_swing`` in
    object heights."""
    rest = np.asarray(splat.means, np.float64)
    ids, names = region_parts(rest)
    arm = np.flatnonzero(ids == names.index(f"{side}_arm"))
    if len(arm) < 4:
        return 0
    hand = arm[rest[arm, 2] <= np.percentile(rest[arm, 2], 10)]
    heights = []
    for cur in animation_means(splat, animation).astype(np.float64):
        s, r, tr = robust_similarity_fit(rest, cur)
        heights.append((((cur[hand] - tr) @ r) / s)[:, 2].mean())  # the object's own motion undone
    heights = np.asarray(heights)
    return up_down_cycles(heights / max(np.ptp(rest[:, 2]), 1e-9), min_swing)


def classify_motion(rest_means: np.ndarray, frames_means: np.ndarray, part_ids: np.ndarray | None = None,
                    part_names: tuple[str, ...] = ()) -> tuple[str, dict[str, float]]:
    """(dominant label, scores) of per-frame means [T, N, 3] against the rest means [N, 3]."""
    scores = motion_scores(motion_features(rest_means, frames_means, part_ids, part_names))
    return max(scores, key=scores.get), scores


def animation_means(splat: GaussianSplat, animation: Animation) -> np.ndarray:
    """Per-frame means [T, N, 3]."""
    return np.asarray(splat.means, np.float32)[None] + animation.delta_position


def classify_animation(splat: GaussianSplat, animation: Animation, part_labels: bool = True
                       ) -> tuple[str, dict[str, float]]:
    """Dominant motion of ``animation`` applied to ``splat``: with its part labels when it has them
    and ``part_labels`` is on, else with regions found from its geometry (``region_parts``)."""
    ids = getattr(splat, "part_ids", None) if part_labels else None
    names = tuple(getattr(splat, "part_names", None) or ()) if ids is not None else ()
    if ids is None or not names:
        ids, names = region_parts(np.asarray(splat.means))
    return classify_motion(np.asarray(splat.means), animation_means(splat, animation),
                           None if ids is None else np.asarray(ids), names)


# ---- quality metrics ---------------------------------------------------------------------------------


def psnr(a, b) -> float:
    """PSNR in dB of two images in [0, 1], capped at ``PSNR_CAP`` (identical images)."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return min(PSNR_CAP, 10.0 * math.log10(1.0 / max(mse, 1e-20)))


def ssim(a, b, window: int = 7) -> float:
    """Mean SSIM of two [H, W, 3] images in [0, 1] (uniform window, per channel)."""
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(np.asarray(a, np.float32)).permute(2, 0, 1)[None]
    y = torch.as_tensor(np.asarray(b, np.float32)).permute(2, 0, 1)[None]
    pool = lambda z: F.avg_pool2d(z, window, 1, window // 2, count_include_pad=False)  # noqa: E731
    mx, my = pool(x), pool(y)
    vx, vy, cxy = pool(x * x) - mx * mx, pool(y * y) - my * my, pool(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())


def temporal_smoothness(frames_means: np.ndarray, height: float) -> float:
    """Mean ‖x_{t+1} − 2x_t + x_{t−1}‖ over Gaussians and frames, in object heights (lower is smoother)."""
    x = np.asarray(frames_means, np.float64)
    if len(x) < 3:
        return 0.0
    return float(np.linalg.norm(x[2:] - 2 * x[1:-1] + x[:-2], axis=-1).mean() / height)


def motion_magnitude(rest_means: np.ndarray, frames_means: np.ndarray, height: float) -> float:
    """Mean over Gaussians of the largest displacement over the clip, in object heights."""
    d = np.linalg.norm(np.asarray(frames_means, np.float64) - np.asarray(rest_means, np.float64)[None], axis=-1)
    return float(d.max(0).mean() / height)


def distortion(rest_means: np.ndarray, frames_means: np.ndarray, k: int = 8, max_points: int = 4000) -> float:
    """ARAP residual (dimensionless) of the frames against the rest means, over a fixed subset."""
    import torch

    from animus3d_worker.motion.regularizers import arap_loss, knn_graph

    rest = np.asarray(rest_means, np.float32)
    idx = np.arange(len(rest)) if len(rest) <= max_points else np.sort(
        np.random.default_rng(0).choice(len(rest), max_points, replace=False))
    rest_t = torch.from_numpy(rest[idx])
    graph = knn_graph(rest_t, k=k)
    with torch.no_grad():
        return float(arap_loss(rest_t, torch.from_numpy(np.asarray(frames_means, np.float32)[:, idx]), graph))


def _front_renders(splat: GaussianSplat, animation: Animation, resolution: int, undo_global: bool):
    """Front renders [T, H, W, 3] (optionally with each frame's global similarity undone)."""
    import torch

    from animus3d_worker.render import make_cameras, render
    from .motion_data import matrix_to_quat
    from animus3d_shared.deformation import quat_multiply

    means0 = np.asarray(splat.means, np.float64)
    lo, hi = means0.min(0), means0.max(0)
    cams = make_cameras(lo, hi, resolution=resolution, orbit_views=0)
    T = animation.num_frames
    all_means, all_quats, all_logs = [], [], []
    for t in range(T):
        m = animation.frame_means(splat.means, t).astype(np.float64)
        q = animation.frame_quats(splat.quats, t).astype(np.float64)
        ls = animation.frame_log_scales(splat.log_scales, t).astype(np.float64)
        if undo_global:
            s, r, tr = robust_similarity_fit(means0, m)
            m = ((m - tr) @ r) / s
            q = quat_multiply(np.broadcast_to(matrix_to_quat(r.T), q.shape), q)
            ls = ls - math.log(max(s, 1e-6))
        all_means.append(m), all_quats.append(q), all_logs.append(ls)
    f = lambda arrs: torch.tensor(np.stack(arrs), dtype=torch.float32)  # noqa: E731
    opac = torch.sigmoid(torch.tensor(np.asarray(splat.opacity_logits, np.float32)))
    colors = torch.tensor(np.asarray(splat.colors, np.float32)).clamp(0, 1)
    with torch.no_grad():
        images, _ = render(f(all_means), f(all_quats), torch.exp(f(all_logs)), opac, colors, cams, backend="torch")
        static, _ = render(torch.tensor(means0, dtype=torch.float32), torch.tensor(np.asarray(splat.quats, np.float32)),
                           torch.exp(torch.tensor(np.asarray(splat.log_scales, np.float32))), opac, colors, cams,
                           backend="torch")
    return images[:, 0].numpy(), static[0, 0].numpy()


@dataclass
class CaseMetrics:
    """Everything measured for one animation."""

    predicted: str
    expected: str | None
    correct: bool | None
    magnitude: float
    appearance_psnr: float
    appearance_ssim: float
    frame0_psnr: float
    smoothness: float
    distortion: float
    scores: dict[str, float] = field(default_factory=dict)
    predicted_without_labels: str = ""  # the label-free classifier's answer (``region_parts``)


def evaluate_animation(splat: GaussianSplat, animation: Animation, expected: str | None = None,
                       resolution: int = 96) -> CaseMetrics:
    """All metrics of ``animation`` on ``splat`` against the ``expected`` motion label."""
    label, scores = classify_animation(splat, animation)
    rest = np.asarray(splat.means, np.float64)
    frames = animation_means(splat, animation)
    height = float(max(np.ptp(rest[:, 2]), 1e-6))
    undone, static = _front_renders(splat, animation, resolution, undo_global=True)
    raw, _ = _front_renders(splat, Animation(animation.delta_position[:1], animation.delta_rotation[:1],
                                             animation.delta_scale[:1]), resolution, undo_global=False)
    return CaseMetrics(
        predicted=label, expected=expected, correct=None if expected is None else label == expected,
        magnitude=motion_magnitude(rest, frames, height),
        appearance_psnr=float(np.mean([psnr(img, static) for img in undone])),
        appearance_ssim=float(np.mean([ssim(img, static) for img in undone])),
        frame0_psnr=psnr(raw[0], static),
        smoothness=temporal_smoothness(frames, height),
        distortion=distortion(rest, frames),
        scores={k: round(v, 4) for k, v in scores.items()},
        predicted_without_labels=classify_animation(splat, animation, part_labels=False)[0],
    )


# ---- suites and ablations ----------------------------------------------------------------------------

ABLATIONS: dict[str, dict[str, Any]] = {
    "none": {},
    "sds": {"score_mode": "sds"},  # needs a pipeline switch: static score replaced by the sampled noise
    "random_noise": {"noise_mode": "random"},
    "text_static": {"static_prior": "text"},
    "static_negative": {"guidance_negative": "static"},  # CFG steers away from the static description
}
ARAP_SWEEP = (0.0, 1.0, 8.0, 64.0)
# Ablations of MSD itself: they change nothing in a job without MSD steps (`draft`, `standard` and `high`
# generate then fit): run them with `--preset msd`.
MSD_ABLATIONS = frozenset({"sds", "random_noise", "text_static", "static_negative"})


def ablation_overrides(name: str) -> dict[str, Any]:
    """Setting overrides of an ablation: a name in ``ABLATIONS`` or ``arap=<weight>``."""
    if name in ABLATIONS:
        return dict(ABLATIONS[name])
    if name.startswith("arap="):
        try:
            return {"arap_weight": float(name.split("=", 1)[1])}
        except ValueError:
            raise EvaluationError(f"bad ablation {name!r}: expected arap=<number>") from None
    raise EvaluationError(f"unknown ablation {name!r}; choose one of {sorted(ABLATIONS)}, arap=<weight> or arap_sweep")


@dataclass(frozen=True)
class SuiteCase:
    """One evaluation case: a procedural asset, a prompt, the expected motion label."""

    id: str
    kind: str
    seed: int
    prompt: str
    expected: str
    count: int = 3000


def load_suite(path: str | Path) -> list[SuiteCase]:
    """Cases from a JSON-lines file (one object per line: id, kind, seed, prompt, expected[, count])."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise EvaluationError(f"cannot read suite {path}: {exc.strerror or exc}") from None
    cases = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            cases.append(SuiteCase(**json.loads(line)))
        except (TypeError, json.JSONDecodeError) as exc:
            raise EvaluationError(f"{path}:{number}: bad case: {exc}") from None
    if not cases:
        raise EvaluationError(f"suite {path} has no cases")
    return cases


def summarise(results: list[dict]) -> dict[str, float]:
    """Overall means (accuracy over cases with an expected label)."""
    if not results:
        return {}
    keys = ("magnitude", "appearance_psnr", "appearance_ssim", "frame0_psnr", "smoothness", "distortion")
    out = {k: float(np.mean([r[k] for r in results])) for k in keys}
    judged = [r["correct"] for r in results if r["correct"] is not None]
    out["accuracy"] = float(np.mean(judged)) if judged else float("nan")
    free = [r["predicted_without_labels"] == r["expected"] for r in results
            if r.get("expected") is not None and r.get("predicted_without_labels")]
    if free:
        out["accuracy_without_labels"] = float(np.mean(free))
    out["cases"] = len(results)
    return out


def run_case(case: SuiteCase, settings, *, device: str = "auto", models=None, priors=None, seed: int = 0) -> dict:
    """Runs the pipeline on one case and measures the result."""
    from animus3d_worker.events import JobEvents
    from .motion_data import make_object
    from animus3d_worker.pipeline import run_job

    obj = make_object(case.kind, case.seed, case.count)
    messages: list[str] = []  # what the stages said (a turn found, a draw kept...), kept with the case's scores

    def keep_message(progress) -> None:
        if progress.message and progress.stage in ("guide", "msd", "refine"):
            messages.append(f"{progress.stage}: {progress.message}")

    events = JobEvents(on_progress=keep_message)
    start = time.perf_counter()
    result = run_job(obj.splat, case.prompt, settings, seed=seed, device=device, models=models, priors=priors,
                     events=events)
    seconds = time.perf_counter() - start
    metrics = evaluate_animation(obj.splat, result.animation, case.expected)
    return {"id": case.id, "prompt": case.prompt, "motion_prompt": result.motion_prompt, **asdict(metrics),
            "pipeline_seconds": round(seconds, 1), "messages": messages}


def metrics_dict(metrics: CaseMetrics) -> dict:
    return asdict(metrics)
