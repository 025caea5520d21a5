"""`animus3d inspect FILE.ply [--json]`: validate a 3DGS PLY file and print a summary of it."""

from __future__ import annotations

import argparse
import json

from animus3d_shared.ply import PlyError, PlyInfo, read_ply_info
from animus3d_shared.splat import DEFAULT_MAX_GAUSSIANS

from . import CommandError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE.ply", help="a Gaussian-splat PLY file (INRIA 3DGS layout)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument(
        "--max-gaussians",
        type=int,
        default=DEFAULT_MAX_GAUSSIANS,
        metavar="N",
        help=f"refuse files with more Gaussians than this (default {DEFAULT_MAX_GAUSSIANS})",
    )


def run(args: argparse.Namespace) -> int:
    try:
        info = read_ply_info(args.file, max_gaussians=args.max_gaussians)
    except PlyError as exc:
        raise CommandError(str(exc)) from None
    print(json.dumps(info.to_dict()) if args.json else format_summary(info))
    return 0


def format_summary(info: PlyInfo) -> str:
    """The human-readable summary: one ``key: value`` line per field."""

    def vec(values) -> str:
        return "[" + ", ".join(f"{float(v):.4g}" for v in values) + "]"

    extent = info.bbox_max - info.bbox_min
    lines = [
        f"file:       {info.path}",
        f"format:     {info.format}",
        f"count:      {info.count}",
        f"sh_degree:  {info.sh_degree}",
        f"bbox_min:   {vec(info.bbox_min)}",
        f"bbox_max:   {vec(info.bbox_max)}",
        f"extent:     {vec(extent)}",
        f"attributes: {len(info.attributes)}: {' '.join(info.attributes)}",
    ]
    return "\n".join(lines)
