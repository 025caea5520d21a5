"""Which stages a job runs, and what each costs, from its settings alone.

The plan is the list of stage names (a subset of ``animus3d_shared.protocol.STAGES``, in that order);
``pipeline.run_job`` runs it. The work table weighs one step of each stage in UNet forwards, for the
progress fraction and the time-left estimate. Both read only the settings of the stages they include.
"""

from __future__ import annotations

from animus3d_shared.settings import JobSettings

GUIDE_DRAW_WORK_PER_STEP = 6.0  # UNet forwards per DDIM step of the guide draw (CFG, preference scoring)


def needs_lora(settings: JobSettings) -> bool:
    """The LoRA is MSD's ε_static only: no MSD steps, no LoRA to fit (the guide uses the base model)."""
    return settings.msd_steps > 0 and settings.score_mode == "msd" and settings.static_prior == "lora"


def stage_plan(settings: JobSettings) -> list[str]:
    """The optimisation stages a job runs, in order (load and export always run around them)."""
    plan = []
    if needs_lora(settings):
        plan.append("static_prior")
    if settings.guide_steps > 0:
        plan.append("guide")
    if settings.msd_steps > 0:
        plan.append("msd")
    if settings.refine_steps > 0:
        plan.append("refine")
    return plan


def msd_step_work(settings: JobSettings) -> float:
    """UNet forwards of one MSD step: the three scores plus the amortised inversion."""
    inversion = settings.inversion_steps / settings.inversion_every if settings.noise_mode == "ddim_inversion" else 0.0
    return 3.0 + inversion


def guide_draw_rounds(settings: JobSettings) -> int:
    """The most rounds of ``guide_draws`` clips a guide draw takes (more than one only when the prompt
    names a side of the object and ``guide_side_draws`` asks for more clips than one round has)."""
    return max(1, -(-settings.guide_side_draws // settings.guide_draws))


def guide_draw_work(settings: JobSettings) -> float:
    """Work of drawing the guide clip, done before the guide fit's first step reports."""
    return GUIDE_DRAW_WORK_PER_STEP * settings.guide_denoise_steps


def stage_work(settings: JobSettings, plan: list[str]) -> dict[str, float]:
    """The work of each planned stage (forward + backward counted where a stage trains)."""
    work: dict[str, float] = {}
    if "static_prior" in plan:
        work["static_prior"] = 1.5 * settings.lora_batch * settings.lora_steps
    if "guide" in plan:
        work["guide"] = guide_draw_work(settings) + 0.5 * settings.guide_steps
    if "msd" in plan:
        work["msd"] = msd_step_work(settings) * settings.msd_steps
    if "refine" in plan:
        work["refine"] = 2.0 * settings.refine_steps
    return work
