"""The product never imports the lab: checked on the source (every import statement of the product
packages) and at run time (importing the pipeline and the CLI loads no lab module)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT_DIRS = [ROOT / "worker", ROOT / "shared", ROOT / "blender_addon"]


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_product_module_imports_the_lab():
    offenders = []
    for folder in PRODUCT_DIRS:
        for path in folder.rglob("*.py"):
            if any(name.split(".")[0] == "animus3d_lab" for name in _imported_modules(path)):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_importing_the_pipeline_and_cli_loads_no_lab_module():
    code = ("import sys, animus3d_worker.pipeline, animus3d_worker.cli, animus3d_worker.service.server; "
            "print(sorted(m for m in sys.modules if m.startswith('animus3d_lab')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_lab_commands_are_offered_by_the_cli():
    from animus3d_worker.cli import build_parser

    for name in ("evaluate", "train-prior", "check-prior", "bench"):
        parser = build_parser(only=name)
        sub = next(a for a in parser._actions if a.dest == "command").choices[name]
        assert sub.get_default("_missing") is None, name
        assert sub.get_default("_run") is not None, name
