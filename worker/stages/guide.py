"""Stage 2a: a guide clip drawn by the prior, and the motion field fitted to it.

The `standard` preset's way to a motion (generate, then fit); off in `msd` and `paper`.

MSD follows the prior's one-step score, and a small prior's one-step score at a still render says
little about which way to move (docs/evaluation.md, "Why MSD does not find the motions the prior
recognises"). Sampling many steps does say it: the still front render taken to a high noise level
(fresh noise with its first frame held to the render, by default; or its DDIM inversion, which pulls
the clip back to still) and sampled back under the motion prompt with classifier-free guidance comes
out as a clip of the object moving (of several draws, ``guide_draws``, the one the prior's motion
prompt explains best against the static prompt; when the prompt names a side of the object, "its
left arm", draws continue until one moves that side, ``guide_side_draws``, and a clip that moves the
other side, or travels the other way than a named direction, has its motion mirrored,
``guide_mirror``). The field is fitted to
that clip in pixel space from the front view, a few frames more every step (a motion grows out of
the rest pose, so each new frame starts next to the last fitted one), under the same ARAP and TV-3D regularisers as MSD, which
then continues from the fitted field when ``msd_steps > 0`` (``standard`` stops at the fit and refines).

Only the guide is drawn without gradients; the fit backpropagates through the renderer alone.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch

from animus3d_shared.settings import JobSettings

from ..events import JobEvents, Progress
from ..priors import ddim, scoring
from .core import Conditioning, MotionProblem, fit_step
from .pixel_fit import pixel_fit_loss
from .plan import guide_draw_rounds
from .yaw_search import search_yaw, start_from_yaw

FRONT_VIEW = 0  # make_cameras puts the front camera first
WINDOW_GROWTH = 0.6  # the fitted window reaches the last frame after this fraction of the steps


@dataclass(frozen=True)
class TurnSearch:
    """What the turn search found in the guide and which fit was kept."""

    turn_deg: float  # the whole-object turn about the up axis by the clip's last frame
    kept: bool  # the fit from the turn explained the guide better and is the one kept
    turned_error: float  # each fit's distance from the guide (the fit's own pixel loss)
    unturned_error: float

    @property
    def message(self) -> str:
        turn = f"{self.turn_deg:+.0f}°"
        kept = (f"kept the fit from a turn of {turn}" if self.kept
                else f"kept the fit without the turn of {turn} the search found")
        return f"{kept} (guide error {self.turned_error:.5f} from the turn, {self.unturned_error:.5f} without)"


@dataclass
class GuideFit:
    losses: dict[str, list[float]]
    turn: TurnSearch | None = None  # None: no search ran, or it found no turn


@dataclass
class GuideOutcome:
    clip: torch.Tensor  # [T, 3, H, W] in [0, 1], the guide the field was fitted to
    losses: dict[str, list[float]] = field(default_factory=dict)
    turn: TurnSearch | None = None
    preferences: list[float] = field(default_factory=list)  # per draw (``guide_draws`` > 1), lower kept
    kept_draw: int = 0
    side_balances: list[float] = field(default_factory=list)  # per draw, when the prompt names a side
    mirrored: bool = False  # the kept draw was mirrored before the fit (``guide_mirror``)


@dataclass
class GuideDraws:
    clips: torch.Tensor  # [N, T, 3, H, W] in [0, 1]
    preferences: list[float]  # the prior's preference for each (prompt_preference; empty for one draw)
    kept: int  # the index of the clip the field is fitted to
    side: str | None = None  # the side of the object the prompt names ("left", "right"), if any
    side_balances: list[float] = field(default_factory=list)  # per clip: how much it moves that side, in [-1, 1]
    still: torch.Tensor | None = None  # [3, H, W] the still object's front render the clips start from

    @property
    def kept_clip(self) -> torch.Tensor:
        return self.clips[self.kept]

    @property
    def side_found(self) -> bool:
        return bool(self.side_balances) and self.side_balances[self.kept] > SIDE_MARGIN


SIDE_MARGIN = 0.2  # a clip moves a side when that side's share of the change exceeds the other's by this
HEADING_MARGIN = 0.1  # a clip travels one way when its object's centre moves by this fraction of its width


def side_balance(clips: torch.Tensor, still: torch.Tensor, side: str) -> torch.Tensor:
    """Per clip of ``clips`` [N, T, 3, H, W]: how much more the object's ``side`` ("left" or "right", its
    own, facing the front camera: its right is the image's left) changes from the first frame than its
    other side, in [-1, 1]. The sides split at the object's centre column in ``still`` [3, H, W] (the
    column centroid of its difference from the corner pixel's colour, the background)."""
    width = still.shape[-1]
    columns = torch.arange(width, dtype=torch.float32, device=still.device)
    centre, mass = _ink_centre(_ink(still, still))
    centre = float(centre) if float(mass) > 0 else (width - 1) / 2
    change = (clips - clips[:, :1]).abs().sum(dim=(1, 2)).sum(1).float()  # [N, W]
    image_left = change[:, columns < centre].sum(-1)
    image_right = change[:, columns > centre].sum(-1)
    balance = (image_left - image_right) / (image_left + image_right).clamp_min(1e-8)
    return balance if side == "right" else -balance


def _ink(frames: torch.Tensor, still: torch.Tensor) -> torch.Tensor:
    """Per frame of ``frames`` [..., 3, H, W], per column: how far it is from the background (the colour of
    ``still``'s [3, H, W] top-left pixel), summed over channels and rows."""
    return (frames - still[:, :1, :1]).abs().sum(dim=(-3, -2)).float()


def _ink_centre(ink: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The centre column of ``ink`` [..., W] (its centroid; 0 where there is none) and its mass [...]."""
    columns = torch.arange(ink.shape[-1], dtype=torch.float32, device=ink.device)
    mass = ink.sum(-1)
    return (ink * columns).sum(-1) / mass.clamp_min(1e-8), mass


def heading_travel(clips: torch.Tensor, still: torch.Tensor) -> torch.Tensor:
    """Per clip of ``clips`` [N, T, 3, H, W]: how far the object's centre column travels to the image's
    right (negative: left) over the second half of the clip, from the first frame, as a fraction of its
    width in ``still`` [3, H, W] (columns whose difference from the background exceeds a tenth of the
    largest). Frames with almost nothing but background are left out; 0 when none is left or the still
    shows no object."""
    still_ink = _ink(still, still)
    if float(still_ink.max()) <= 0:
        return torch.zeros(clips.shape[0])
    filled = torch.nonzero(still_ink > 0.1 * still_ink.max()).flatten()
    extent = float(filled[-1] - filled[0] + 1)
    centre, mass = _ink_centre(_ink(clips, still))  # [N, T] each
    seen = mass > 0.1 * float(still_ink.sum())  # frames that still show most of an object
    late = seen[:, 1:].clone()
    late[:, :(centre.shape[1] - 1) // 2] = False  # the second half of the clip
    late &= seen[:, :1]
    moved = ((centre[:, 1:] - centre[:, :1]) * late).sum(-1) / late.sum(-1).clamp_min(1)
    return moved / extent


def mirrored_motion(clip: torch.Tensor) -> torch.Tensor:
    """``clip`` [T, 3, H, W] with its change from the first frame mirrored left to right and laid over
    the first frame: the object keeps its own look (a lopsided object stays as it is where nothing
    moves) while what moved on one side moves on the other."""
    change = clip - clip[:1]
    return (clip[:1] + change.flip(-1)).clamp(0.0, 1.0)


def mirror_reason(clip: torch.Tensor, still: torch.Tensor, side: str | None, heading: str | None) -> str | None:
    """Why the guide ``clip`` [T, 3, H, W] should be mirrored before the fit, or None: it moves the other
    side of the object than ``side``, or travels the other way than ``heading`` (image directions)."""
    if side is not None:
        balance = float(side_balance(clip.unsqueeze(0), still, side)[0])
        if balance < -SIDE_MARGIN:
            other = "left" if side == "right" else "right"
            return f"it moves the object's {other} side, not its {side} (balance {balance:+.2f})"
    if heading is not None:
        travel = float(heading_travel(clip.unsqueeze(0), still)[0])
        if (travel if heading == "right" else -travel) < -HEADING_MARGIN:
            return f"it travels {'left' if travel < 0 else 'right'}, not {heading} ({travel:+.2f} of its width)"
    return None


def draw_guide_clips(prior, problem: MotionProblem, cond: Conditioning, settings: JobSettings,
                     generator: torch.Generator | None = None, side: str | None = None) -> GuideDraws:
    """The prior's clips of the still object moving as prompted, from the front view.

    ``guide_noise`` "inverted": one clip sampled from the DDIM inversion of the still clip (under the
    static prompt); "anchored": ``guide_draws`` clips from fresh noise (``generator``), each with its
    first frame held to the still render's at every noise level, so the prior continues the object's
    rest pose. Of several draws the one kept is the one the prior itself says the motion prompt
    explains best against the static prompt (``scoring.prompt_preference``; no list of motions is
    involved). With the embedded prior that choice is worse than the first draw (docs/evaluation.md), so
    one draw is the default.

    ``side``: the side of the object the prompt names. With ``guide_side_draws`` > 1, anchored rounds
    of ``guide_draws`` clips are drawn until one moves that side (``side_balance``), at most
    ``guide_side_draws`` clips; of those that do, the one kept is chosen as above; when none does, the
    one that comes closest."""
    with torch.no_grad():
        still = field_front_clip(problem).unsqueeze(0)  # the field is still the identity
        latents = prior.encode_frames(still.to(prior.dtype))
        t_start = int(round(settings.guide_strength * (prior.num_train_timesteps - 1)))
        if settings.guide_noise != "anchored" or settings.guide_side_draws <= 1:
            side = None  # one round, chosen as without a side
        rounds = 1 if side is None else guide_draw_rounds(settings)
        clips, preferences, balances = [], [], []
        for _ in range(rounds):
            sampled = _draw_round(prior, latents, cond, settings, t_start, generator)
            if sampled.shape[0] > 1:
                preferences += [float(p) for p in scoring.prompt_preference(prior, sampled, cond.motion, cond.static)]
            clips.append(prior.decode_latents(sampled).float())
            if side is None:
                break
            balances += [float(b) for b in side_balance(clips[-1], still[0, 0], side)]
            if max(balances) > SIDE_MARGIN:
                break
        candidates = [i for i, b in enumerate(balances) if b > SIDE_MARGIN]
        if balances and not candidates:
            candidates = [max(range(len(balances)), key=balances.__getitem__)]
        candidates = candidates or list(range(sum(c.shape[0] for c in clips)))
        kept = min(candidates, key=preferences.__getitem__) if preferences else candidates[0]
        return GuideDraws(torch.cat(clips), preferences, kept, side, balances, still[0, 0].float())


def _draw_round(prior, latents: torch.Tensor, cond: Conditioning, settings: JobSettings, t_start: int,
                generator: torch.Generator | None) -> torch.Tensor:
    """One round of guide draws, as latents: ``guide_draws`` anchored clips, or the one inverted clip."""
    anchor = None
    if settings.guide_noise == "anchored":
        shape = (settings.guide_draws, *latents.shape[1:])
        noise = torch.randn(shape, generator=generator).to(latents.device, latents.dtype)
        x_t = prior.add_noise(latents.expand(shape), noise, t_start)
        anchor = ddim.leading_frames_anchor(latents, noise, 1)
    else:
        x_t, _ = prior.ddim_invert(latents, cond.static, t_start, settings.guide_denoise_steps, lora=False)
    draws = x_t.shape[0]
    texts = torch.cat([cond.motion.expand(draws, -1, -1), cond.negative.expand(draws, -1, -1)])
    return prior.ddim_sample(x_t, texts, t_start, settings.guide_denoise_steps, lora=False,
                             guidance_scale=settings.guide_guidance_scale, anchor=anchor)


def fitted_window(step: int, total: int, frames: int) -> int:
    """How many leading frames the fit compares at ``step``: 2 at first, all of them from ``WINDOW_GROWTH``."""
    ramp = max(1, int(total * WINDOW_GROWTH))
    return min(frames, 2 + (step * frames) // ramp)


def compared_frames(window: int, most: int, generator: torch.Generator) -> slice | torch.Tensor:
    """The frames a fit step compares: the whole window, or ``most`` of its frames drawn at random
    (sorted) when ``most`` is set and smaller than the window."""
    if most <= 0 or most >= window:
        return slice(0, window)
    return torch.randperm(window, generator=generator)[:most].sort().values


def fit_to_guide(problem: MotionProblem, guide: torch.Tensor, settings: JobSettings, events: JobEvents,
                 on_step=None) -> GuideFit:
    """``settings.guide_steps`` steps pulling the field's front-view clip towards ``guide``.

    With ``guide_yaw_search`` the whole-object motion is frozen at the identity unless the search finds
    a turn in the guide; then the clip is fitted twice, from that turn and without it (frozen), and the
    fit that explains the guide better is kept: a search from one view also takes some jumps for turns
    (docs/evaluation.md)."""
    global_motion = problem.field.global_motion
    yaw = None
    if settings.guide_yaw_search and global_motion is not None:
        yaw = search_yaw(problem, guide, FRONT_VIEW)
        global_motion.requires_grad_(False)  # the job without the search, unless a turn is kept below
    if yaw is None:
        return GuideFit(_fit(problem, guide, settings, events, on_step, 0, settings.guide_steps))

    total = 2 * settings.guide_steps
    rest = copy.deepcopy(problem.field.state_dict())
    unturned_losses = _fit(problem, guide, settings, events, on_step, 0, total)
    unturned_error, unturned = guide_error(problem, guide, settings), copy.deepcopy(problem.field.state_dict())
    problem.field.load_state_dict(rest)
    start_from_yaw(global_motion, yaw)
    global_motion.requires_grad_(True)
    turned_losses = _fit(problem, guide, settings, events, on_step, settings.guide_steps, total)
    turned_error = guide_error(problem, guide, settings)
    search = TurnSearch(math.degrees(float(yaw[-1])), turned_error < unturned_error, turned_error, unturned_error)
    if not search.kept:
        problem.field.load_state_dict(unturned)
        global_motion.requires_grad_(False)
    events.progress(Progress("guide", total, total, message=search.message))
    return GuideFit(turned_losses if search.kept else unturned_losses, search)


def _fit(problem: MotionProblem, guide: torch.Tensor, settings: JobSettings, events: JobEvents, on_step,
         first_step: int, total: int) -> dict[str, list[float]]:
    """``settings.guide_steps`` fit steps, reported as steps ``first_step``… of ``total``."""
    optimiser = problem.optimiser(settings.guide_lr, settings.global_lr)
    losses: dict[str, list[float]] = {}
    steps = settings.guide_steps
    draw = torch.Generator().manual_seed(first_step)  # the frames compared, when fewer than the window
    for step in range(steps):
        events.check_cancelled()
        frames = compared_frames(fitted_window(step, steps, problem.frames), settings.guide_fit_frames, draw)
        deltas, (means, quats, log_scales) = problem.deform(problem.frames)
        # Only the compared frames are rendered; the regularisers still see every frame's deformation.
        clip = problem.render_clips(means[frames], quats[frames], log_scales[frames], (FRONT_VIEW,))[0]
        terms = {"guide": pixel_fit_loss(clip, guide[frames], settings.fit_colour_match, settings.fit_coarse_levels)}
        terms.update(problem.regularisers(deltas, means, settings, None))
        fit_step("guide", first_step + step, total, terms, settings, optimiser, losses, events, on_step)
    return losses


def field_front_clip(problem: MotionProblem) -> torch.Tensor:
    """The field's clip [T, 3, H, W] from the front view, as it stands (no gradients)."""
    with torch.no_grad():
        _, (means, quats, log_scales) = problem.deform(problem.frames)
        return problem.render_clips(means, quats, log_scales, (FRONT_VIEW,))[0]


def guide_error(problem: MotionProblem, guide: torch.Tensor, settings: JobSettings) -> float:
    """How far the field's front-view clip is from the whole guide (the fit's own pixel loss)."""
    with torch.no_grad():
        return float(pixel_fit_loss(field_front_clip(problem), guide, settings.fit_colour_match,
                                settings.fit_coarse_levels))


def guide_motion(prior, problem: MotionProblem, cond: Conditioning, settings: JobSettings, events: JobEvents,
                 on_step=None, generator: torch.Generator | None = None, side: str | None = None,
                 heading: str | None = None) -> GuideOutcome:
    """Draws the guide clip(s), keeps one and fits the field to it (``side``: see ``draw_guide_clips``;
    with ``guide_mirror``, the kept clip is mirrored when it moves the other side than ``side`` or
    travels the other way than ``heading``, "left" or "right" as the front camera sees it)."""
    draws = draw_guide_clips(prior, problem, cond, settings, generator, side)
    if draws.side_balances:
        found = "moves" if draws.side_found else "comes closest to moving"
        events.progress(Progress("guide", 0, settings.guide_steps,
                                 message=f"kept guide draw {draws.kept + 1} of {len(draws.side_balances)}: it {found} "
                                         f"the object's {draws.side} side (balance "
                                         f"{draws.side_balances[draws.kept]:+.2f})"))
    elif draws.preferences:
        ranked = ", ".join(f"{p:+.4f}" for p in draws.preferences)
        events.progress(Progress("guide", 0, settings.guide_steps,
                                 message=f"kept guide draw {draws.kept + 1} of {len(draws.preferences)} "
                                         f"(motion-vs-still preference {ranked})"))
    guide = draws.kept_clip
    mirrored = False
    if settings.guide_mirror and (side is not None or heading is not None):
        reason = mirror_reason(guide, draws.still, side, heading)
        if reason is not None:
            guide, mirrored = mirrored_motion(guide), True
            events.progress(Progress("guide", 0, settings.guide_steps, message=f"mirrored the guide clip: {reason}"))
    fit = fit_to_guide(problem, guide, settings, events, on_step)
    return GuideOutcome(clip=guide, losses=fit.losses, turn=fit.turn, preferences=draws.preferences,
                        kept_draw=draws.kept, side_balances=draws.side_balances, mirrored=mirrored)
