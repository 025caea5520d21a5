"""Writes a finished job to a folder.

    DIR/frames/frame_0000.ply …   full 3DGS splat per frame, Gaussian order kept
    DIR/animation.npz             delta_position [T,N,3], delta_rotation [T,N,4], delta_scale [T,N,3], fps
    DIR/preview.mp4               front-camera renders of every frame (imageio-ffmpeg)
    DIR/preview.png               a contact sheet of up to 8 frames, for a quick look
    DIR/job.json                  prompt, settings, seed, device, timings, losses, warnings
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np

from animus3d_shared.deformation import Animation
from animus3d_shared.ply import write_ply
from animus3d_shared.splat import GaussianSplat

from . import __version__
from .events import JobResult

PREVIEW_SIZE = 256


def frame_splat(splat: GaussianSplat, animation: Animation, frame: int) -> GaussianSplat:
    return splat.with_arrays(
        means=animation.frame_means(splat.means, frame),
        quats=animation.frame_quats(splat.quats, frame),
        log_scales=animation.frame_log_scales(splat.log_scales, frame),
    )


def save_animation(path: Path, animation: Animation) -> None:
    np.savez(path, delta_position=animation.delta_position, delta_rotation=animation.delta_rotation,
             delta_scale=animation.delta_scale, fps=np.float32(animation.fps))


def load_animation(path: Path) -> Animation:
    with np.load(path, allow_pickle=False) as data:
        return Animation(data["delta_position"], data["delta_rotation"], data["delta_scale"], float(data["fps"]))


def render_front_frames(splat: GaussianSplat, animation: Animation, size: int = PREVIEW_SIZE,
                        device: str = "cpu") -> np.ndarray:
    """uint8 [T, size, size, 3] renders of every frame from the front camera."""
    import torch

    from .render import make_cameras, render
    from .splat_tensors import SplatTensors

    tensors = SplatTensors.from_splat(splat, device)
    lo, hi = tensors.bbox
    cams = make_cameras(lo, hi, resolution=size, orbit_views=0, device=device)
    frames = []
    with torch.no_grad():
        for f in range(animation.num_frames):
            moved = SplatTensors.from_splat(frame_splat(splat, animation, f), device)
            image, _ = render(moved.means, moved.quats, moved.scales, moved.opacities, moved.colors, cams)
            frames.append((image[0, 0].clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy())
    return np.stack(frames)


def write_video(path: Path, frames: np.ndarray, fps: float) -> None:
    import imageio_ffmpeg

    t, h, w, _ = frames.shape
    writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=float(fps), codec="libx264", pix_fmt_out="yuv420p",
                                         macro_block_size=1, ffmpeg_log_level="error")
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()


def write_contact_sheet(path: Path, frames: np.ndarray, count: int = 8) -> None:
    from PIL import Image

    picks = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
    Image.fromarray(np.concatenate([frames[i] for i in picks], axis=1)).save(path)


def write_outputs(out_dir: str | Path, splat: GaussianSplat, result: JobResult, *, render_preview: bool = True,
                  device: str = "cpu") -> dict[str, Path]:
    out = Path(out_dir)
    frames_dir = out / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    animation = result.animation
    if animation.num_gaussians != splat.count:
        raise ValueError(f"animation covers {animation.num_gaussians} Gaussians, the splat has {splat.count}")
    written: dict[str, Path] = {}
    for stale in frames_dir.glob("frame_*.ply"):
        stale.unlink()
    for f in range(animation.num_frames):
        write_ply(frames_dir / f"frame_{f:04d}.ply", frame_splat(splat, animation, f))
    written["frames"] = frames_dir
    written["animation"] = out / "animation.npz"
    save_animation(written["animation"], animation)
    if render_preview:
        frames = render_front_frames(splat, animation, device=device)
        written["preview"] = out / "preview.mp4"
        write_video(written["preview"], frames, animation.fps)
        written["preview_sheet"] = out / "preview.png"
        write_contact_sheet(written["preview_sheet"], frames)
    written["job"] = out / "job.json"
    job = {
        "animus3d_version": __version__,
        "prompt": result.prompt,
        "static_prompt": result.static_prompt,
        "motion_prompt": result.motion_prompt,
        "seed": result.seed,
        "device": result.device,
        "settings": result.settings,
        "frames": animation.num_frames,
        "fps": animation.fps,
        "gaussians": splat.count,
        "timings_s": result.timings,
        "losses": result.losses,
        "loss_history": result.loss_history,
        "warnings": result.warnings,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": platform.node(),
    }
    written["job"].write_text(json.dumps(job, indent=2))
    return written
