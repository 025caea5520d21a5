"""Can the prior animate a still object at all? (a diagnostic for the generate-then-fit idea)

    python lab/scripts/sdedit_probe.py [--kind character] [--seed 101] [--strengths 0.8,0.95] [--guidances 7.5]
    python lab/scripts/sdedit_probe.py --noise random        # plain SDEdit: fresh noise instead of inversion
    python lab/scripts/sdedit_probe.py --suite evals/suite.jsonl --strengths 0.95 --guidances 15   # every case

For one synthetic object: its still clip's latents z₀ are DDIM-inverted under the derived static
prompt to t = strength·T (or noised with fresh Gaussian noise, ``--noise random``), then
DDIM-sampled back under each motion prompt with classifier-free guidance (SDEdit). Each result is
compared with the latents of every ground-truth motion clip of the same object: the nearest clip
(L2) and the clip whose direction from z₀ is closest (cosine) are its predicted motions. If most
rows land on their own motion, the prior can turn a still render into the prompted motion and a
fitted motion field could follow it. ``--sheets DIR`` writes what it made, above the ground truth.

Note that the single-object mode compares only with moving clips. ``--suite FILE`` runs each case's
object (its own seed and size) and prompt instead and compares with every motion of its kind, still
included: the clip the guide stage (``guide_steps``) would fit to, and whether it is the prompted
motion at all.
"""

from __future__ import annotations

import argparse

import torch

from animus3d_lab.motion_data import KIND_MOTIONS, describe, make_object, motion_animation, render_clip
from animus3d_worker.pipeline import derive_static_prompt
from animus3d_worker.priors import ddim, load_prior
from animus3d_worker.priors.scoring import TIMESTEPS, prompt_preference


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", default="character")
    ap.add_argument("--seed", type=int, default=101)
    ap.add_argument("--prior", default="embedded")
    ap.add_argument("--strengths", default="0.8", help="comma-separated SDEdit strengths")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidances", default="7.5", help="comma-separated guidance scales")
    ap.add_argument("--amplitudes", default="0.5,1.0", help="ground-truth amplitudes to compare with")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--noise", choices=("inverted", "random"), default="inverted",
                    help="start from the DDIM inversion of the still clip (MSD's noise) or from fresh noise")
    ap.add_argument("--sheets", metavar="DIR", help="write a contact sheet per prompt: result above ground truth")
    ap.add_argument("--paraphrases", type=int, default=1, help="prompts per motion (index 0..n-1)")
    ap.add_argument("--suite", metavar="FILE", help="run every case of an evaluation suite (object, prompt, expected)")
    ap.add_argument("--limit", type=int, help="with --suite: the first N cases")
    ap.add_argument("--draws", type=int, default=1, help="with --suite --noise random: noise seeds per setting")
    ap.add_argument("--anchor-frames", type=int, default=0,
                    help="with --suite: hold the first N frames to the still clip's while sampling (replacement)")
    ap.add_argument("--save-latents", metavar="FILE.pt",
                    help="with --suite: save every case's sampled latents, still latents and nearest motions (fp16)")
    ap.add_argument("--preference-repeats", type=int, default=1,
                    help="with --draws > 1: also rank the draws over this many noises per timestep")
    args = ap.parse_args()

    prior = load_prior(args.prior, device=args.device)
    if args.suite:
        return probe_suite(prior, args)
    obj = make_object(args.kind, args.seed, 1500)
    motions = list(KIND_MOTIONS[args.kind])
    clip = lambda label, a=1.0: render_clip(obj, motion_animation(obj, label, 16, a), resolution=64,  # noqa: E731
                                            device=args.device, backend="torch")
    amplitudes = [float(a) for a in args.amplitudes.split(",")]
    with torch.no_grad():
        z0 = prior.encode_frames(clip("still")[None]).float()
        refs, names = [], []
        for m in motions:
            if m == "still":
                continue
            for a in amplitudes:
                refs.append(prior.encode_frames(clip(m, a)[None]).float())
                names.append(m)
        refs = torch.cat(refs)
        directions = (refs - z0).flatten(1)
        directions = directions / directions.norm(dim=1, keepdim=True)
        empty = prior.encode_text([""])
        for strength in (float(x) for x in args.strengths.split(",")):
            for guidance in (float(x) for x in args.guidances.split(",")):
                probe(prior, args, motions, z0, refs, directions, names, empty, strength, guidance)


def probe(prior, args, motions, z0, refs, directions, names, empty, strength: float, guidance: float) -> None:
    """All prompts in one batch (the small UNet is latency-bound: a batch of 24 costs about one forward)."""
    t_start = int(strength * (prior.num_train_timesteps - 1))
    rows = [(m, k, describe(args.kind, m, index=k)) for m in motions for k in range(args.paraphrases)]
    prompts = [prompt for _, _, prompt in rows]
    start = z0.expand(len(rows), *z0.shape[1:])
    if args.noise == "inverted":
        statics = prior.encode_text([derive_static_prompt(p) for p in prompts])
        x_t, _ = prior.ddim_invert(start, statics, t_start, args.steps)
    else:  # fresh noise, the same for every motion (paraphrase k gets seed k)
        noise = torch.cat([torch.randn(z0.shape, generator=torch.Generator().manual_seed(k)) for _, k, _ in rows])
        x_t = prior.add_noise(start, noise.to(z0.device), t_start)
    texts = torch.cat([prior.encode_text(prompts), empty.expand(len(rows), -1, -1)])
    results = prior.ddim_sample(x_t, texts, t_start, args.steps, guidance_scale=guidance).float()
    near_hits = cos_hits = total = 0
    moved_still = moved_other = 0.0
    for (m, k, prompt), z in zip(rows, results):
        z = z[None]
        moved = float((z - z0).norm() / z0.norm())
        if args.sheets:
            truth = refs[len(names) - 1 - names[::-1].index(m)][None] if m in names else z0  # amplitude 1
            write_sheet(prior, args, z, truth, m, k, strength, guidance)
        if m == "still":
            moved_still += moved
            print(f"  {prompt!r:>48}: moved {moved:.3f}")
            continue
        moved_other += moved
        total += 1
        nearest = [names[i] for i in (refs - z).flatten(1).norm(dim=1).argsort()]
        cos = directions @ (z - z0).flatten() / (z - z0).norm()
        by_cos = [names[i] for i in cos.argsort(descending=True)]
        near_hits += nearest[0] == m
        cos_hits += by_cos[0] == m
        print(f"  {prompt!r:>48}: nearest {nearest[0]:>11} (own rank {nearest.index(m) + 1}), "
              f"direction {by_cos[0]:>11} (own rank {by_cos.index(m) + 1}), moved {moved:.3f}")
    print(f"{args.kind} seed {args.seed}, {args.noise} noise, strength {strength} guidance {guidance}: "
          f"nearest clip right {near_hits}/{total}, "
          f"direction right {cos_hits}/{total}; moved still {moved_still / args.paraphrases:.3f} "
          f"vs others {moved_other / max(total, 1):.3f}", flush=True)


def probe_suite(prior, args) -> None:
    """Each suite case: the guide clip of its still object under its prompt, and its nearest motion."""
    from animus3d_lab.evaluation import load_suite

    cases = load_suite(args.suite)[: args.limit]
    settings = [(float(s), float(g)) for s in args.strengths.split(",") for g in args.guidances.split(",")]
    right = {key: 0 for key in settings}
    picked_right = {key: 0 for key in settings}  # the draw the prior prefers (the guide stage's guide_draws)
    moving = 0
    empty = prior.encode_text([""])
    saved = {}
    rule_right = {}
    for case in cases:
        obj = make_object(case.kind, case.seed, case.count)
        names = list(KIND_MOTIONS[case.kind])
        with torch.no_grad():
            refs = torch.cat([prior.encode_frames(render_clip(obj, motion_animation(obj, m, 16, 1.0), resolution=64,
                                                              device=args.device, backend="torch")[None]).float()
                              for m in names])
            z0 = refs[names.index("still")][None]
            static = prior.encode_text([derive_static_prompt(case.prompt)])
            texts = torch.cat([prior.encode_text([case.prompt]), empty])
            found = []
            for strength, guidance in settings:
                t_start = int(strength * (prior.num_train_timesteps - 1))
                if args.noise == "inverted":
                    x_t, noise = prior.ddim_invert(z0, static, t_start, args.steps)
                else:  # fresh noise, one seed per draw
                    noise = torch.cat([torch.randn(z0.shape, generator=torch.Generator().manual_seed(k))
                                       for k in range(args.draws)]).to(z0.device)
                    x_t = prior.add_noise(z0.expand(args.draws, *z0.shape[1:]), noise, t_start)
                anchor = ddim.leading_frames_anchor(z0, noise, args.anchor_frames) if args.anchor_frames else None
                z = prior.ddim_sample(x_t, texts.repeat_interleave(x_t.shape[0], 0), t_start, args.steps,
                                      guidance_scale=guidance, anchor=anchor).float()
                nearest = [names[int((refs - one).flatten(1).norm(dim=1).argmin())] for one in z]
                right[(strength, guidance)] += case.expected in nearest and case.expected != "still"
                kept = ""
                if len(z) > 1:
                    preference = prompt_preference(prior, z, texts[:1], static)
                    pick = int(preference.argmin())
                    picked_right[(strength, guidance)] += nearest[pick] == case.expected and case.expected != "still"
                    kept = f" kept {nearest[pick]} [{' '.join(f'{p:+.4f}' for p in preference.tolist())}]"
                    if args.preference_repeats > 1:  # the same measure over more noises, to see how stable it is
                        more = prompt_preference(prior, z, texts[:1], static,
                                                 timesteps=TIMESTEPS * args.preference_repeats, seed=1)
                        kept += (f" kept-x{args.preference_repeats} {nearest[int(more.argmin())]} "
                                 f"[{' '.join(f'{p:+.4f}' for p in more.tolist())}]")
                    moved = (z - z0).flatten(1).norm(dim=1) / z0.norm()
                    kept += f" moved [{' '.join(f'{m:.3f}' for m in moved.tolist())}]"
                    for rule, pick in label_free_picks(z).items():
                        rule_right.setdefault((strength, guidance, rule), 0)
                        rule_right[(strength, guidance, rule)] += nearest[pick] == case.expected
                        kept += f" {rule}:{nearest[pick]}"
                found.append(f"{'/'.join(nearest)}{kept} (s{strength} g{guidance})")
                saved[(case.id, strength, guidance)] = {"sampled": z[:8].half().cpu(), "expected": case.expected,
                                                        "nearest": nearest}
        for key in [k for k in saved if k[0] == case.id]:
            saved[key].update(still=z0.half().cpu())
        moving += case.expected != "still"
        print(f"  {case.id:>22} expected {case.expected:>11}: nearest {', '.join(found)}", flush=True)
    for (strength, guidance, rule), hits in sorted(rule_right.items()):
        print(f"  s{strength} g{guidance} rule {rule}: the picked draw is the expected motion for {hits}/{len(cases)} cases")
    if args.save_latents:
        torch.save(saved, args.save_latents)
    for (strength, guidance), hits in right.items():
        draws = "" if args.noise == "inverted" else f" (any of {args.draws} draws of fresh noise)"
        print(f"suite {args.suite}: strength {strength} guidance {guidance}: the guide is the prompted motion{draws} "
              f"for {hits}/{moving} moving cases (nearest of the kind's motions at amplitude 1, still included)")
        if args.draws > 1 and args.noise == "random":
            print(f"  the draw the prior prefers (motion vs static prompt) is the prompted motion for "
                  f"{picked_right[(strength, guidance)]}/{moving}")


def label_free_picks(z: torch.Tensor) -> dict[str, int]:
    """Candidate rules for choosing one of several draws ``[N, C, T, h, w]`` without a list of motions:
    each draw's motion is its frames' latents minus its first frame's (appearance drift cancels)."""
    motion = (z[:, :, 1:] - z[:, :, :1]).flatten(1).float()
    energy = motion.norm(dim=1)
    distances = torch.cdist(motion, motion)
    moving = energy.argsort(descending=True)[: max(1, (len(z) + 1) // 2)]
    sub = distances[moving][:, moving]
    radius = distances[distances > 0].median() if len(z) > 1 else torch.tensor(0.0)
    dense = ((distances[moving] < radius).sum(1).float() * 1e3 + energy[moving]).argmax()
    quarter = energy.argsort(descending=True)[: max(1, (len(z) + 3) // 4)]
    return {"max_energy": int(energy.argmax()),
            "median_energy": int(energy.argsort()[len(z) // 2]),
            "medoid_all": int(distances.sum(1).argmin()),
            "medoid_moving_half": int(moving[sub.sum(1).argmin()]),
            "densest_moving_half": int(moving[dense]),
            "medoid_moving_quarter": int(quarter[distances[quarter][:, quarter].sum(1).argmin()])}


def write_sheet(prior, args, z, truth, motion: str, k: int, strength: float, guidance: float) -> None:
    """PNG: 8 frames of the SDEdit result (top) and of the motion's ground-truth clip (bottom)."""
    from pathlib import Path

    import numpy as np

    from animus3d_worker.outputs import write_contact_sheet

    frames = prior.decode_latents(torch.cat([z, truth]).to(prior.dtype))
    rows = (frames.permute(0, 1, 3, 4, 2).float().cpu().numpy() * 255).round().astype(np.uint8)  # [2, F, H, W, 3]
    out = Path(args.sheets)
    out.mkdir(parents=True, exist_ok=True)
    stacked = np.concatenate([rows[0], rows[1]], axis=1)  # [F, 2H, W, 3]
    write_contact_sheet(out / f"{args.kind}-{args.seed}-{args.noise}-s{strength}-g{guidance}-{motion}-{k}.png", stacked)


if __name__ == "__main__":
    main()
