"""`animus3d inspect` run as a real subprocess: summaries, JSON, and one-line refusals."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from animus3d_shared.ply import write_ply
from animus3d_shared.samples import make_test_blob

ASSET = Path(__file__).resolve().parents[1] / "assets" / "sample_character.ply"


def inspect(*args):
    return subprocess.run(
        [sys.executable, "-m", "animus3d_worker.cli", "inspect", *map(str, args)],
        capture_output=True, text=True, timeout=60,
    )


def assert_one_line_error(result):
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("animus3d inspect: error: ")
    assert "Traceback" not in result.stderr
    return lines[0]


def test_json_summary_of_the_sample_character():
    result = inspect(ASSET, "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["count"] == 24000 and info["sh_degree"] == 1
    assert info["format"] == "binary_little_endian"
    assert len(info["bbox_min"]) == 3 and len(info["bbox_max"]) == 3
    assert 1.7 < info["bbox_max"][2] < 1.9 and info["bbox_min"][2] >= -0.01
    assert info["attributes"][:3] == ["x", "y", "z"] and "rot_3" in info["attributes"]


def test_text_summary(tmp_path):
    path = tmp_path / "blob.ply"
    blob = make_test_blob(seed=1, count=300, sh_degree=2)
    write_ply(path, blob, ascii=True)
    result = inspect(path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "count:      300" in out and "sh_degree:  2" in out and "format:     ascii" in out
    assert "bbox_min:" in out and "bbox_max:" in out and "f_rest_23" in out


@pytest.mark.parametrize("case", ["missing", "not_ply", "truncated", "wrong_schema", "nan"])
def test_bad_files_give_one_line_and_non_zero_exit(tmp_path, case):
    path = tmp_path / f"{case}.ply"
    if case == "not_ply":
        path.write_text("hello\n")
    elif case == "truncated":
        write_ply(path, make_test_blob(count=200))
        path.write_bytes(path.read_bytes()[:-50])
    elif case == "wrong_schema":
        write_ply(path, make_test_blob(count=200))
        path.write_bytes(path.read_bytes().replace(b"property float opacity", b"property float opakity", 1))
    elif case == "nan":
        blob = make_test_blob(count=200)
        write_ply(path, blob)
        data = bytearray(path.read_bytes())
        start = data.index(b"end_header\n") + len(b"end_header\n")
        data[start:start + 4] = np.float32(np.nan).tobytes()  # x of the first Gaussian
        path.write_bytes(bytes(data))
    line = assert_one_line_error(inspect(path, "--json"))
    expected = {
        "missing": "no such file",
        "not_ply": "not a PLY file",
        "truncated": "truncated",
        "wrong_schema": "missing required vertex property: opacity",
        "nan": "property 'x' has 1 non-finite value(s)",
    }[case]
    assert expected in line


def test_max_gaussians_option():
    line = assert_one_line_error(inspect(ASSET, "--max-gaussians", "1000"))
    assert "24000 Gaussians; the limit is 1000" in line
