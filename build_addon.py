#!/usr/bin/env python3
"""Build the Animus3D Blender extension: ``dist/animus3d-<version>.zip``.

The zip holds the add-on (``blender_addon/``), its own copy of the shared protocol code
(``shared/*.py`` as the subpackage ``animus3d_shared``) and the pyzmq, msgpack and plyfile wheels
for every platform and Python that Blender 4.2+ ships (cp311 for 4.2–5.0, cp313 for 5.1+).

Each compiled wheel is built for exactly one Python ABI (``cp311-cp311``, ``cp313-cp313``), never a
stable-ABI ``abi3`` wheel: Blender 4.2 installs an ``abi3`` wheel tagged for a newer Python than its
own and then fails to import it. Where the installed version of a package has no wheel for one
Python's own ABI, ``OWN_ABI_FALLBACK`` names the versions to take for that Python.
Wheels are fetched once with ``pip download`` into ``build/wheels`` and reused.

The package is built and validated with Blender's own extension tool ``blender_ext.py``, which the
``bpy`` wheel carries; without bpy the zip is written directly and reported as unvalidated.

    python build_addon.py [--out dist] [--platforms linux-x64 windows-x64 macos-arm64] [--offline]
"""

from __future__ import annotations

import argparse
import glob
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
ADDON_SRC = ROOT / "blender_addon"
SHARED_SRC = ROOT / "shared"
WHEEL_CACHE = ROOT / "build" / "wheels"
STAGE_DIR = ROOT / "build" / "addon_stage"

PYTHONS = ("3.11", "3.13")  # Blender 4.2–5.0, 5.1+
# Blender platform name -> pip --platform tags accepted for it (newest first).
PLATFORM_TAGS = {
    "linux-x64": ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"),
    "windows-x64": ("win_amd64",),
    "macos-arm64": ("macosx_11_0_arm64", "macosx_10_15_universal2", "macosx_10_9_universal2"),
}
BINARY_PACKAGES = ("pyzmq", "msgpack")
# pyzmq 27 publishes only stable-ABI (abi3) wheels for Python 3.12+; 26.x is its newest line with
# cp313-cp313 wheels. Asked when the installed version has no wheel for a Python's own ABI.
OWN_ABI_FALLBACK = {"pyzmq": "pyzmq<27"}
PURE_PACKAGES = ("plyfile",)


# Files of the source folders that the add-on never imports: kept out of the zip.
# bake_blend.py is a command-line script run by a Python that has bpy; samples.py builds test splats.
ADDON_EXCLUDE = ("bake_blend.py",)
SHARED_EXCLUDE = ("samples.py",)


class BuildError(RuntimeError):
    """The extension could not be built; the message says why."""


def project_version() -> str:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE)
    if not match:
        raise BuildError("no version in pyproject.toml")
    return match.group(1)


def pinned(package: str) -> str:
    """``package==<version installed here>`` so the add-on ships what the tests ran with."""
    try:
        return f"{package}=={importlib.metadata.version(package)}"
    except importlib.metadata.PackageNotFoundError:
        return package


def _cached(package: str, python: str | None, platform: str | None) -> list[Path]:
    name = package.replace("-", "_")
    found = []
    for path in WHEEL_CACHE.glob(f"{name}-*.whl"):
        tags = path.name[:-4].split("-")
        py_tag, _abi, plat = tags[-3], tags[-2], tags[-1]
        if python is None:
            found.append(path)
            continue
        want_py = "cp" + python.replace(".", "")
        if not (py_tag == want_py and _abi == want_py):  # the Python's own ABI only, never abi3
            continue
        if any(t in plat.split(".") for t in PLATFORM_TAGS[platform]):
            found.append(path)
    return found


def fetch_wheels(platforms: list[str], offline: bool) -> list[Path]:
    """Every wheel the extension needs, downloading the missing ones into build/wheels."""
    WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
    wheels: set[Path] = set()
    jobs: list[tuple[str, str | None, str | None]] = [(p, None, None) for p in PURE_PACKAGES]
    jobs += [(p, py, plat) for p in BINARY_PACKAGES for py in PYTHONS for plat in platforms]
    for package, python, platform in jobs:
        have = _cached(package, python, platform)
        if not have:
            if offline:
                raise BuildError(f"--offline: no cached wheel for {package} {python or ''} {platform or ''} in {WHEEL_CACHE}")
            cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(WHEEL_CACHE)]
            if python is not None:
                cmd += ["--python-version", python, "--implementation", "cp"]
                for tag in PLATFORM_TAGS[platform]:
                    cmd += ["--platform", tag]
            requirements = [pinned(package)]
            if python is not None and package in OWN_ABI_FALLBACK:
                requirements.append(OWN_ABI_FALLBACK[package])
            for requirement in requirements:
                proc = subprocess.run(cmd + [requirement], capture_output=True, text=True)
                if proc.returncode != 0:
                    raise BuildError(f"pip download {requirement} failed: {proc.stderr.strip().splitlines()[-1:]}")
                have = _cached(package, python, platform)
                if have:
                    break
            if not have:
                raise BuildError(f"pip download gave no usable wheel for {package} {python} {platform}")
        # Keep one wheel per (package, python, platform): the newest name sorts last.
        wheels.add(sorted(have)[-1])
    return sorted(wheels)


def stage_source(version: str, wheels: list[Path], platforms: list[str]) -> Path:
    """Lay out the extension's source tree: add-on, vendored shared package, wheels, manifest."""
    if STAGE_DIR.exists():
        shutil.rmtree(STAGE_DIR)
    shutil.copytree(ADDON_SRC, STAGE_DIR, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", *ADDON_EXCLUDE))
    vendored = STAGE_DIR / "animus3d_shared"
    vendored.mkdir()
    for source in sorted(SHARED_SRC.glob("*.py")):
        if source.name in SHARED_EXCLUDE:
            continue
        shutil.copy2(source, vendored / source.name)
    wheel_dir = STAGE_DIR / "wheels"
    wheel_dir.mkdir()
    for wheel in wheels:
        shutil.copy2(wheel, wheel_dir / wheel.name)
    manifest_path = STAGE_DIR / "blender_manifest.toml"
    manifest = manifest_path.read_text(encoding="utf-8")
    wheel_lines = "".join(f'  "./wheels/{w.name}",\n' for w in wheels)
    manifest = re.sub(r"^wheels = \[\]$", "wheels = [\n" + wheel_lines + "]", manifest, flags=re.MULTILINE)
    manifest = re.sub(r'^version = "[^"]*"$', f'version = "{version}"', manifest, flags=re.MULTILINE)
    plats = ", ".join(f'"{p}"' for p in platforms)
    manifest = re.sub(r"^platforms = \[.*\]$", f"platforms = [{plats}]", manifest, flags=re.MULTILINE)
    manifest_path.write_text(manifest, encoding="utf-8")
    return STAGE_DIR


def find_blender_ext() -> Path | None:
    """Blender's extension command-line tool inside the installed bpy wheel, if any."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.origin:
        return None
    pattern = os.path.join(os.path.dirname(spec.origin), "*", "scripts", "addons_core", "bl_pkg", "cli", "blender_ext.py")
    hits = sorted(glob.glob(pattern))
    return Path(hits[-1]) if hits else None


def _zip_directly(source: Path, out_dir: Path, version: str) -> Path:
    target = out_dir / f"animus3d-{version}.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(source.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(source).as_posix())
    return target


def build(out_dir: Path, platforms: list[str], offline: bool = False, log=print) -> Path:
    """Build and validate the extension zip; returns its path."""
    unknown = sorted(set(platforms) - set(PLATFORM_TAGS))
    if unknown:
        raise BuildError(f"unknown platform(s) {unknown}; choose from {sorted(PLATFORM_TAGS)}")
    version = project_version()
    wheels = fetch_wheels(platforms, offline)
    log(f"wheels: {len(wheels)} ({', '.join(w.name for w in wheels)})")
    source = stage_source(version, wheels, platforms)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"animus3d-{version}.zip"
    if target.exists():
        target.unlink()
    tool = find_blender_ext()
    if tool is None:
        log("warning: bpy is not installed, so Blender's extension builder is unavailable; zip not validated")
        return _zip_directly(source, out_dir, version)
    for args in (["validate", str(source)], ["build", "--source-dir", str(source), "--output-dir", str(out_dir)]):
        proc = subprocess.run([sys.executable, str(tool), *args], capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError(f"blender_ext {args[0]} failed: {(proc.stdout + proc.stderr).strip()}")
    if not target.exists():
        raise BuildError(f"blender_ext build did not write {target}")
    proc = subprocess.run([sys.executable, str(tool), "validate", str(target)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"blender_ext validate {target.name} failed: {(proc.stdout + proc.stderr).strip()}")
    log(f"built and validated {target}")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default: dist)")
    parser.add_argument("--platforms", nargs="+", default=list(PLATFORM_TAGS), choices=list(PLATFORM_TAGS))
    parser.add_argument("--offline", action="store_true", help="use only wheels already in build/wheels")
    args = parser.parse_args(argv)
    try:
        build(args.out, args.platforms, args.offline)
    except BuildError as exc:
        print(f"build_addon: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
