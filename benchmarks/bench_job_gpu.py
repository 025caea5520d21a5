"""Benchmark: whole jobs through a real worker on a GPU, at ModelScope size, timed like a user sees them.

Run on a CUDA machine (gsplat installed):

    python benchmarks/bench_job_gpu.py [--preset standard] [--preset draft] [--folder DIR]

It writes a ModelScope-size prior with random weights (diffusers' default UNet3DConditionModel,
the SD AutoencoderKL, a 1024-wide CLIP text encoder; bf16 safetensors, ~3 GB) into ``--folder``
unless one is there, starts ``animus3d worker --device cuda`` with that folder as its motion prior,
submits each preset's job (default: `standard`, the product default) for the 200k-Gaussian sample
character over ZeroMQ and prints, per job:
seconds to ACCEPTED, to the first PREVIEW, to RESULT, and the worker's own stage timings. The
LoRA cache is emptied first, so the static-prior stage really trains (a second job on the same asset
would skip it). Random weights make the motion meaningless; the timing is the real code's.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_full_size_prior(folder: Path) -> Path:
    """Saves ``bench.build_full_size_prior`` as a diffusers folder (what a downloaded model looks like)."""
    import diffusers
    import torch

    from animus3d_lab.bench import build_full_size_prior
    from animus3d_worker.priors.tiny import MODELSCOPE_SCHEDULER
    from diffusers import DDIMScheduler

    if (folder / "model_index.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    prior = build_full_size_prior(torch.device("cuda"), torch.bfloat16)
    prior.unet.save_pretrained(str(folder / "unet"))
    prior.vae.save_pretrained(str(folder / "vae"))
    prior.text_encoder.save_pretrained(str(folder / "text_encoder"))
    prior.tokenizer.save_pretrained(str(folder / "tokenizer"))
    DDIMScheduler(**MODELSCOPE_SCHEDULER).save_pretrained(str(folder / "scheduler"))
    index = {"_class_name": "TextToVideoSDPipeline", "_diffusers_version": diffusers.__version__,
             "scheduler": ["diffusers", "DDIMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet3DConditionModel"],
             "vae": ["diffusers", "AutoencoderKL"]}
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    del prior
    torch.cuda.empty_cache()
    return folder


def run_job(client, splat, preset: str, timeout_s: float) -> dict:
    from animus3d_shared import protocol as p

    start = time.monotonic()
    client.submit(splat, "the character waves its right arm", settings={"preset": preset}, seed=0)
    row: dict = {"preset": preset}
    result = None
    while time.monotonic() - start < timeout_s and result is None:
        for msg in client.poll(max_messages=64, max_time_s=0.05):
            now = time.monotonic() - start
            if isinstance(msg, p.Accepted):
                row["accepted_s"] = now
            elif isinstance(msg, p.Progress) and msg.stage == "msd" and "msd_start_s" not in row:
                row["msd_start_s"] = now
            elif isinstance(msg, p.Preview) and "first_preview_s" not in row:
                row["first_preview_s"] = now
            elif isinstance(msg, (p.Result, p.Error, p.Cancelled)):
                result = msg
        time.sleep(0.01)
    row["result_s"] = time.monotonic() - start
    if not isinstance(result, p.Result):
        row["error"] = repr(result)
        return row
    row["timings"] = {k: round(v, 2) for k, v in result.timings.items()}
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", action="append", dest="presets", help="preset(s) to run (default: standard)")
    parser.add_argument("--folder", default=str(Path(tempfile.gettempdir()) / "animus3d-modelscope-size"),
                        help="where the full-size random prior is (or is written)")
    parser.add_argument("--gaussians", type=int, default=200_000)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per job")
    args = parser.parse_args()

    import torch

    from animus3d_shared.samples import make_character
    from tests.helpers_worker import start_worker

    if not torch.cuda.is_available():
        print("needs a CUDA GPU", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    folder = write_full_size_prior(Path(args.folder))
    print(f"prior folder ready in {time.monotonic() - t0:.0f} s: {folder}")
    work = Path(tempfile.mkdtemp(prefix="animus3d-jobbench-"))
    models = work / "models.json"
    models.write_text(json.dumps({"motion_prior": str(folder), "lora_cache_dir": str(work / "lora")}))
    splat = make_character(seed=0, count=args.gaussians)
    rows = []
    with start_worker(work, "--device", "cuda", "--models", str(models), startup_timeout=600) as worker:
        client = worker.client(timeout_s=600.0)
        for preset in args.presets or ["standard"]:
            row = run_job(client, splat, preset, args.timeout)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\ndevice: {torch.cuda.get_device_name(0)}   splat: {splat.count} Gaussians   "
          f"prior: ModelScope-size, random weights, bf16")
    print("| preset | first PREVIEW (s) | − model load (s) | RESULT (s) | − model load (s) | load | static prior | "
          "guide | MSD | refine |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        t = row.get("timings", {})
        load = t.get("load", 0.0)
        preview = row.get("first_preview_s")
        cells = [preview, None if preview is None else preview - load, row.get("result_s"), row["result_s"] - load,
                 t.get("load"), t.get("static_prior"), t.get("guide"), t.get("msd"), t.get("refine")]
        print(f"| {row['preset']} | " + " | ".join("—" if c is None else f"{c:.1f}" for c in cells) + " |")
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
