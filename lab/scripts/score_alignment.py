"""Does the MSD gradient at a still render point toward the prompted motion? (a diagnostic)

    python lab/scripts/score_alignment.py [--kind character] [--seed 101] [--prior embedded] [--steps 10]
    python lab/scripts/score_alignment.py --continue-from 0.3     # starts that already move a little

For one synthetic object: the latents z₀ of its still clip (front view) and, per motion m, the latents
z_m of its ground-truth clip. For each prompt p, the MSD update direction at z₀ — minus
w(t)·(ε_dynamic(p, CFG) − ε_static), ε from a DDIM inversion of z₀, averaged over t — is compared by
cosine with every z_m − z₀. If the score is informative, each row's largest cosine is on its own motion.
The static score here is the base model under the derived static prompt (the `text_static` variant):
no LoRA is fitted, so this isolates what the prior's text conditioning contributes.

``--continue-from A``: instead of the still clip, start from each motion at amplitude A (MSD later in
its run) and ask whether the update under that motion's own prompt points toward amplitude 1 more
than the updates under the other prompts do (its rank among all prompts, 1 = best).
"""

from __future__ import annotations

import argparse

import torch

from animus3d_shared.settings import JobSettings
from animus3d_lab.motion_data import KIND_MOTIONS, describe, make_object, motion_animation, render_clip
from animus3d_worker.pipeline import derive_static_prompt, encode_conditioning
from animus3d_worker.priors import load_prior
from animus3d_worker.stages.msd import msd_gradient, predict_scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", default="character")
    ap.add_argument("--seed", type=int, default=101)
    ap.add_argument("--prior", default="embedded")
    ap.add_argument("--steps", type=int, default=10, help="DDIM inversion steps")
    ap.add_argument("--guidance", type=float, default=7.5)
    ap.add_argument("--timesteps", default="300,500,700")
    ap.add_argument("--centre", action="store_true",
                    help="remove the mean update over prompts first (keep only what the prompt changes)")
    ap.add_argument("--continue-from", type=float, metavar="A", help="start from each motion at amplitude A")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    args = ap.parse_args()

    prior = load_prior(args.prior, device=args.device)
    obj = make_object(args.kind, args.seed, 1500)
    motions = [m for m in KIND_MOTIONS[args.kind] if m != "still"]
    clip = lambda label, a=1.0: render_clip(obj, motion_animation(obj, label, 16, a), resolution=64,  # noqa: E731
                                                 device=args.device, backend="torch")
    settings = JobSettings.from_preset("msd", guidance_scale=args.guidance, static_prior="text")

    def update(z: torch.Tensor, p: str) -> torch.Tensor:
        """−(MSD gradient) at ``z`` under prompt ``p``, summed over the timesteps (the stage's own code)."""
        prompt = describe(args.kind, p, index=0)
        cond = encode_conditioning(prior, prompt, derive_static_prompt(prompt))
        total = torch.zeros_like(z)
        for t_int in (int(x) for x in args.timesteps.split(",")):
            t = torch.full((1,), t_int, dtype=torch.long, device=z.device)
            x_t, _ = prior.ddim_invert(z, cond.static, t_int, args.steps)
            eps_dynamic, eps_static = predict_scores(prior, x_t, t, cond, settings, use_lora=False)
            total -= msd_gradient(eps_dynamic, eps_static, prior.alphas_cumprod, t)
        return total.flatten()

    if args.continue_from is not None:
        with torch.no_grad():
            ranks = []
            for m in motions:
                za = prior.encode_frames(clip(m, args.continue_from)[None]).float()
                d = (prior.encode_frames(clip(m)[None]).float() - za).flatten()
                cos = {p: float(torch.nn.functional.cosine_similarity(update(za, p), d, dim=0)) for p in motions}
                rank = 1 + sum(c > cos[m] for c in cos.values())
                ranks.append(rank)
                print(f"{m:>12}: own prompt {cos[m]:+.3f}, others mean {sum(cos.values()) / len(cos):+.3f}, "
                      f"rank {rank}/{len(motions)}")
            print(f"own prompt ranked first for {sum(r == 1 for r in ranks)}/{len(motions)} motions "
                  f"(mean rank {sum(ranks) / len(ranks):.1f}; chance {(len(motions) + 1) / 2:.1f})")
        return
    with torch.no_grad():
        z0 = prior.encode_frames(clip("still")[None]).float()
        directions = torch.stack([(prior.encode_frames(clip(m)[None]).float() - z0).flatten() for m in motions])
        directions = directions / directions.norm(dim=1, keepdim=True)
        updates = torch.stack([update(z0, p) for p in motions])
        if args.centre:
            common = updates.mean(0, keepdim=True)
            print(f"prompt-independent share of the update: "
                  f"{float(common.norm() ** 2 / updates.norm(dim=1).pow(2).mean()):.0%}")
            updates = updates - common
        cos = (updates / updates.norm(dim=1, keepdim=True)) @ directions.T
    width = max(len(m) for m in motions)
    print(f"cosine(MSD update at the still clip under prompt ↓, ground-truth motion direction →); "
          f"{args.kind} seed {args.seed}, prior {args.prior}")
    print(" " * (width + 2) + " ".join(f"{m[:7]:>7}" for m in motions))
    hits = 0
    for i, p in enumerate(motions):
        best = int(cos[i].argmax())
        hits += best == i
        cells = " ".join(("*" if j == best else " ") + f"{cos[i, j]:+.3f}" for j in range(len(motions)))
        print(f"{p:>{width}}  {cells}")
    print(f"own motion has the largest cosine in {hits}/{len(motions)} rows")


if __name__ == "__main__":
    main()
