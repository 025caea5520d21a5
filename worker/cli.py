"""The `animus3d` console script: a thin dispatcher; each subcommand lives in its own module.

A subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int``. Expected failures
raise ``CommandError`` and become one line on stderr. The product's commands live in
``animus3d_worker.commands``; the lab's (training, evaluation, benchmarks) in
``animus3d_lab.commands``, offered only when the lab is installed. Modules are named here as strings
and imported on demand, so the product never imports the lab.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .commands import CommandError

PRODUCT = "animus3d_worker.commands"
LAB = "animus3d_lab.commands"
SUBCOMMANDS = {
    "inspect": (PRODUCT, "Print a summary of a 3DGS PLY file"),
    "animate": (PRODUCT, "Animate a splat from a text prompt (locally or on a worker)"),
    "worker": (PRODUCT, "Run the ZeroMQ worker service"),
    "farm": (PRODUCT, "Run the ZeroMQ front with its jobs on a Ray cluster"),
    "keygen": (PRODUCT, "Make CURVE key pairs for a worker and its clients"),
    "status": (PRODUCT, "Ask a worker for its version, device, models and queue"),
    "bench": (LAB, "Benchmark the pipeline stages on this machine (lab)"),
    "train-prior": (LAB, "Train the small embedded motion prior (lab)"),
    "evaluate": (LAB, "Run the motion-quality evaluation suite (lab)"),
    "check-prior": (LAB, "Test whether a video prior tells the synthetic motions apart (lab)"),
}


def _module_for(name: str):
    package, _ = SUBCOMMANDS[name]
    return importlib.import_module(f"{package}.{name.replace('-', '_')}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="animus3d", description="Text-driven animation of 3D Gaussian splats.")
    parser.add_argument("--version", action="version", version=f"animus3d {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (package, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if only is None or only == name:
            try:
                module = _module_for(name)
            except ModuleNotFoundError as exc:
                if not exc.name or not (exc.name == package.split(".")[0] or exc.name.startswith(package)):
                    raise
                p.set_defaults(_missing=package)
                continue
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(only=command if command in SUBCOMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if getattr(args, "_missing", False):
        hint = " (it is part of the lab: pip install -e lab)" if args._missing == LAB else ""
        print(f"animus3d: error: '{args.command}' is not available in this build{hint}", file=sys.stderr)
        return 2
    try:
        return int(args._run(args) or 0)
    except CommandError as exc:
        print(f"animus3d {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"animus3d {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
