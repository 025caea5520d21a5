"""Does the MSD gradient at a still render point toward the prompted motion? (a diagnostic)

    python scripts/score_alignment.py [--kind character] [--seed 101] [--prior embedded] [--steps 10]

For one synthetic object: the latents z₀ of its still clip (front view) and, per motion m, the latents
z_m of its ground-truth clip. For each prompt p, the MSD update direction at z₀ — minus
w(t)·(ε_dynamic(p, CFG) − ε_static), ε from a DDIM inversion of z₀, averaged over t — is compared by
cosine with every z_m − z₀. If the score is informative, each row's largest cosine is on its own motion.
The static score here is the base model under the derived static prompt (the `text_static` variant):
no LoRA is fitted, so this isolates what the prior's text conditioning contributes.
"""

from __future__ import annotations

import argparse

import torch

from animus3d_worker.motion_data import KIND_MOTIONS, describe, make_object, motion_animation, render_clip
from animus3d_worker.pipeline import derive_static_prompt
from animus3d_worker.priors import load_prior


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", default="character")
    ap.add_argument("--seed", type=int, default=101)
    ap.add_argument("--prior", default="embedded")
    ap.add_argument("--steps", type=int, default=10, help="DDIM inversion steps")
    ap.add_argument("--guidance", type=float, default=7.5)
    ap.add_argument("--timesteps", default="300,500,700")
    args = ap.parse_args()

    prior = load_prior(args.prior)
    obj = make_object(args.kind, args.seed, 1500)
    motions = [m for m in KIND_MOTIONS[args.kind] if m != "still"]
    clip = lambda label: render_clip(obj, motion_animation(obj, label, 16), resolution=64)  # noqa: E731
    with torch.no_grad():
        z0 = prior.encode_frames(clip("still")[None]).float()
        directions = torch.stack([(prior.encode_frames(clip(m)[None]).float() - z0).flatten() for m in motions])
        directions = directions / directions.norm(dim=1, keepdim=True)
        negative = prior.encode_text([""])
        updates = []
        for p in motions:
            prompt = describe(args.kind, p, index=0)
            text, static = prior.encode_text([prompt]), prior.encode_text([derive_static_prompt(prompt)])
            total = torch.zeros_like(z0)
            for t in (int(x) for x in args.timesteps.split(",")):
                x_t, _ = prior.ddim_invert(z0, static, t, args.steps)
                three = prior.predict_noise(torch.cat([x_t] * 3), t, torch.cat([text, negative, static])).float()
                eps_dyn = three[1] + args.guidance * (three[0] - three[1])
                total -= (1 - prior.alphas_cumprod[t]) * (eps_dyn - three[2])
            updates.append(total.flatten())
        updates = torch.stack(updates)
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
