"""The Blender add-on with the real bpy wheel, every scenario in its own bpy subprocess.

The extension zip is built once per session and installed once into a template
BLENDER_USER_RESOURCES folder; each scenario runs on a copy of it.
"""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

import pytest

from .harness import ANIMUS3D, BLENDERS, LTS_PYTHONS, ROOT, Worker, copy_user_dir, run_scenario

pytestmark = [
    pytest.mark.blender,
    pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="the bpy wheel is not installed"),
]


@pytest.fixture(scope="session")
def addon_zip(tmp_path_factory) -> Path:
    spec = importlib.util.spec_from_file_location("build_addon", ROOT / "build_addon.py")
    build_addon = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_addon)
    return build_addon.build(tmp_path_factory.mktemp("dist"), list(build_addon.PLATFORM_TAGS), log=lambda *_: None)


@pytest.fixture(scope="session")
def installed(tmp_path_factory, addon_zip) -> tuple[Path, dict]:
    """A user-resources folder with the extension installed and enabled, and the install report."""
    user = tmp_path_factory.mktemp("template") / "user"
    user.mkdir()
    report = run_scenario("install_zip.py", user, str(addon_zip))
    return user, report


@pytest.fixture
def user_dir(tmp_path, installed) -> Path:
    return copy_user_dir(installed[0], tmp_path / "user")


def blender_python(blender: str) -> Path | None:
    """The Python of headless Blender ``blender`` (None: this environment's bpy, 5.0); skips when
    make test has not created that Blender's environment."""
    python = LTS_PYTHONS.get(blender)
    if python is not None and not python.exists():
        pytest.skip(f"no headless Blender {blender} at {python} (make test creates it)")
    return python


@pytest.fixture(scope="session")
def installed_in(tmp_path_factory, addon_zip, installed):
    """blender version → a user-resources folder with the extension installed and enabled there."""
    folders: dict[str, Path] = {"5.0": installed[0]}

    def get(blender: str) -> Path:
        if blender not in folders:
            python = blender_python(blender)
            user = tmp_path_factory.mktemp(f"template{blender}") / "user"
            user.mkdir()
            run_scenario("install_zip.py", user, str(addon_zip), python=python)
            folders[blender] = user
        return folders[blender]
    return get


@pytest.mark.parametrize("blender", BLENDERS)
def test_motion_is_data_retimed_nla_disabled_and_linked(installed_in, tmp_path, blender):
    """Defect 6: position, rotation and scale of every frame come from the object's Action through
    the motion modifier; no frame-change handler, so retiming the keys, an NLA strip, the add-on
    disabled, a Blender without the extension and a linked copy all show the same frames."""
    python = blender_python(blender)
    r = run_scenario("motion_as_data.py", copy_user_dir(installed_in(blender), tmp_path / "user"), str(tmp_path),
                     "bake", python=python)
    assert r["blender"][:2] == [int(v) for v in blender.split(".")]
    assert r["handlers"] == 0 and r["shape_keys"] is False
    assert r["fcurves"] == ['modifiers["Animus3D Motion"]["Socket_1"]'], r["fcurves"]  # one keyed input
    for check in ("at_11", "shifted", "shifted_disabled", "nla"):
        assert r[check]["ok"], (check, r[check])
    assert r["disabled"]
    bare = tmp_path / "bare" / "user"  # a Blender that never had the extension
    bare.mkdir(parents=True)
    r = run_scenario("motion_as_data.py", bare, str(tmp_path), "without", python=python)
    assert r["addon_enabled"] is False and r["linked_library"]
    assert r["opened"]["ok"] and r["linked"]["ok"], r


def test_zip_is_a_complete_extension(addon_zip):
    names = zipfile.ZipFile(addon_zip).namelist()
    assert "blender_manifest.toml" in names and "__init__.py" in names
    assert "animus3d_shared/protocol.py" in names and "animus3d_shared/client.py" in names
    manifest = zipfile.ZipFile(addon_zip).read("blender_manifest.toml").decode()
    assert 'blender_version_min = "4.2.0"' in manifest and "network" in manifest
    wheels = [n for n in names if n.startswith("wheels/")]
    for package in ("pyzmq", "msgpack"):
        for plat in ("manylinux", "win_amd64", "macosx"):
            for py in ("cp311", "cp31"):  # cp311 and (cp313 or the abi3 wheel that covers it)
                assert any(package in w and plat in w and py in w for w in wheels), (package, plat, py)
    assert any("cp313" in w or "abi3" in w for w in wheels if "pyzmq" in w)
    assert all(f'"./{w}"' in manifest for w in wheels)


def test_zip_carries_only_wheels_of_each_pythons_own_abi(addon_zip):
    """Blender 4.2 installs a ``cp312-abi3`` wheel on its Python 3.11 and then cannot import it."""
    wheels = [n for n in zipfile.ZipFile(addon_zip).namelist() if n.startswith("wheels/") and "none-any" not in n]
    for wheel in wheels:
        python_tag, abi_tag = wheel[:-4].split("-")[-3:-1]
        assert abi_tag == python_tag and python_tag in ("cp311", "cp313"), wheel
    names = {n for n in zipfile.ZipFile(addon_zip).namelist()}
    assert "bake_blend.py" not in names and "animus3d_shared/samples.py" not in names  # never imported


@pytest.mark.parametrize("blender", BLENDERS)
def test_zip_installs_and_connects_to_a_real_worker(addon_zip, tmp_path, blender):
    python = blender_python(blender)
    user = tmp_path / "user"
    user.mkdir()
    worker = Worker(tmp_path)
    try:
        worker.wait_listening()
        r = run_scenario("install_and_connect.py", user, str(addon_zip), worker.address, python=python)
    finally:
        worker.kill()
    assert r["blender"][:2] == [int(v) for v in blender.split(".")] and r["python"] == [3, 11]
    assert r["install"] == ["FINISHED"] and r["enabled"], r
    assert "zmq_error" not in r, r
    if python is not None:  # those environments have no pyzmq of their own: the extension's wheel is imported
        assert r["zmq_in_user_dir"], r
    assert r["error"] == "" and r["welcome_device"] == "cpu" and r["address"] == worker.address, r
    assert r["disabled"]


def test_install_registers_operators_and_panel(installed):
    report = installed[1]
    assert report["install"] == ["FINISHED"] and report["enabled"]
    for op in ("import_ply", "animate", "cancel", "export_ply_sequence", "clear_animation", "start_worker"):
        assert op in report["operators"]
    assert report["panel"]
    notices = report["notices"]  # the panel says when the worker runs a built-in demo prior
    assert notices["embedded"] and notices["tiny"] and "models.toml" in " ".join(notices["embedded"])
    assert notices["real"] == [] and notices["none"] == []


def test_register_unregister_twice_leaves_nothing(user_dir):
    rounds = run_scenario("register_cycle.py", user_dir)["rounds"]
    assert len(rounds) == 2
    for state in rounds:
        assert state["ops"] and state["timer"] and state["handlers"] == 2 and state["scene_props"]
        assert state["frame_change_handlers"] == 0  # a bake plays without one
        assert state["tick_interval"] == pytest.approx(0.05)
        assert not state["after_timer"] and state["after_handlers"] == 0
        assert not state["after_panel"] and not state["after_scene_props"]
        assert state["after_client"] and state["after_process_exited"]


def test_import_bake_export_reload(user_dir, tmp_path):
    r = run_scenario("import_and_bake.py", user_dir, str(tmp_path))
    assert r["vertices"] == 1500
    want = {f"f_dc_{i}" for i in range(3)} | {f"f_rest_{i}" for i in range(9)} | {"opacity"}
    want |= {f"scale_{i}" for i in range(3)} | {f"rot_{i}" for i in range(4)}
    assert want <= set(r["float_attrs"])
    assert r["roundtrip_exact"] and r["native_matches"]
    assert r["modifier"] == ["NODES"]
    frame_attrs = sorted(f"animus3d_f{t}_{w}" for t in range(5) for w in ("pos", "rot", "scale"))
    for stage in ("bake", "reloaded"):
        b = r[stage]
        assert b["frame_attrs"] == frame_attrs and b["shape_keys"] is False
        assert b["modifiers"] == ["Animus3D Motion", "Animus3D Display"]  # motion first: the display sees it
        assert b["fcurves"] == ['modifiers["Animus3D Motion"]["Socket_1"]']
        assert b["range"] == [1, 5] and b["fps"] == 12
        for check in ("pos_ok", "key_ok", "interp_ok", "rot_ok", "scale_ok", "outside_is_original"):
            assert b[check], (stage, check)
    # named by the scene frame each plays on: the bake starts on frame 1, like the scene
    assert r["export"]["files"] == [f"frame_{f:04d}.ply" for f in range(1, 6)] and r["export"]["frame2_ok"]
    rebake = r["rebake"]
    assert rebake["frame_attrs"] == sorted(f"animus3d_f{t}_{w}" for t in range(3) for w in ("pos", "rot", "scale"))
    assert len(rebake["fcurves"]) == 1 and rebake["range"] == [1, 3]
    assert rebake["keys"] == [[0.0, -1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 2.0], [4.0, -1.0]]
    assert r["cleared"] == {"attrs": [], "modifiers": ["Animus3D Display"], "original": True,
                            "standard_rot_original": True}
    assert r["slow_estimate_writer_done"], "a writer with a high cost estimate must still make progress"


def test_ticks_stay_under_20ms_while_200k_previews_arrive(user_dir, tmp_path):
    r = run_scenario("tick_benchmark.py", user_dir, str(tmp_path), "200000", timeout=300)
    print(f"\ntick durations over {r['count']} ticks: max {r['max'] * 1e3:.1f} ms, p95 {r['p95'] * 1e3:.1f} ms; "
          f"{r['previews']} previews applied, result baked in {r['bake_s']:.2f} s")
    assert r["previews"] >= 2 and r["baked"] and r["final_ok"]
    # The 20 ms target is measured, not asserted (timings depend on machine load; see
    # docs/benchmarks.md). This guard catches what would freeze Blender: work not split across ticks
    # (writing a whole 200k-Gaussian preview in one tick takes several hundred ms).
    assert r["p95"] < 0.050, r
    assert r["max"] < 0.150, r


@pytest.fixture
def worker(tmp_path):
    w = Worker(tmp_path)
    w.wait_listening()
    yield w
    w.kill()


def _animate(user_dir, tmp_path, worker, mode, *extra, timeout=400):
    try:
        return run_scenario("animate_with_worker.py", user_dir, str(tmp_path), worker.address, mode, *extra,
                            timeout=timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- worker log\n{worker.log_text()[-4000:]}") from None


@pytest.mark.slow
def test_animate_with_real_worker_bakes_and_survives_reload(user_dir, tmp_path, worker):
    r = _animate(user_dir, tmp_path, worker, "complete")
    assert r["accepted"] and r["scene_job_id"] and r["object_job_id"] == r["scene_job_id"]
    assert r["static_prompt"] == "a 3D model of a blob"
    assert r["phase"] == "done", r["error"]
    # the embedded prior reads the prompt as one of its learnt captions; the panel shows the reading
    assert r["read_as"] and r["read_as"] != "the blob bounces up and down" and "blob" in r["read_as"], r["read_as"]
    assert r["frames"] >= 4 and r["frame_attrs"] == 3 * r["frames"]
    # non-destructive: the clip starts on the current frame (11), the scene keeps 24 fps and 1-250,
    # and the clip is resampled to 24 fps (its duration kept)
    assert r["range"] == [1, 250] and r["fps"] == 24 and r["start"] == 11
    assert r["frames"] == r["retimed_frames"] and (r["clip"][1] == 24 or r["frames"] != r["clip"][0])
    assert r["checks"] == {"pos": True, "keys": True, "rot": True, "scale": True}
    assert r["reloaded_ok"] and r["reloaded_job_id"] == ""
    assert r["stats"]["max"] < 0.25  # small splat, CPU worker: generous; the 200k benchmark holds 20 ms


@pytest.mark.slow
def test_reopening_the_file_reattaches_and_bakes(user_dir, tmp_path, worker):
    r = _animate(user_dir, tmp_path, worker, "reattach")
    assert r["reattached"] and r["phase"] == "done", r.get("error")
    assert r["checks"] == {"pos": True, "keys": True, "rot": True, "scale": True}


@pytest.mark.slow
def test_cancel_mid_job(user_dir, tmp_path, worker):
    r = _animate(user_dir, tmp_path, worker, "cancel")
    assert r["accepted"] and r["phase"] == "cancelled" and r["scene_job_id_after"] == ""
    assert r["cancel_s"] < 30
    _assert_preview_then_nothing(r)


def _assert_preview_then_nothing(r):
    """Defect 3: a preview is shown as a preview (never as a bake: no Export/Remove Animation), and
    a job that ends without a result leaves nothing behind."""
    during = r["during"]
    assert during["preview_frames"] > 0 and during["baked_frames"] == 0, during
    assert any(name.startswith("animus3d_p") for name in during["frame_attrs"]), during
    assert not during["export_poll"] and not during["remove_poll"], during
    after = r["after"]
    assert after == {"baked_frames": 0, "preview_frames": 0, "frame_attrs": [], "fcurves": [],
                     "export_poll": False, "remove_poll": False}, after


@pytest.mark.slow
def test_killed_worker_gives_a_clear_error_in_time(user_dir, tmp_path, worker):
    r = _animate(user_dir, tmp_path, worker, "kill", str(worker.proc.pid))
    assert r["phase"] == "failed"
    assert "did not answer" in r["error"]
    assert r["detect_s"] < 3.0 + 2.0  # heartbeat timeout (3 s in the scenario) plus slack
    assert r["max_tick_s"] < 0.1
    _assert_preview_then_nothing(r)


def test_bake_blend_writes_a_file_that_plays(tmp_path, user_dir):
    import subprocess
    import sys

    import numpy as np

    from animus3d_shared import ply, samples
    from animus3d_shared.deformation import Animation

    splat = samples.make_test_blob(seed=2, count=600)
    ply.write_ply(tmp_path / "s.ply", splat)
    anim = Animation.identity(6, 600)
    np.savez(tmp_path / "a.npz", delta_position=anim.delta_position + 0.05, delta_rotation=anim.delta_rotation,
             delta_scale=anim.delta_scale, fps=np.float32(8))
    out = tmp_path / "demo" / "demo.blend"
    proc = subprocess.run([sys.executable, str(ROOT / "blender_addon" / "bake_blend.py"), "--ply", str(tmp_path / "s.ply"),
                           "--animation", str(tmp_path / "a.npz"), "--out", str(out)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = run_scenario("check_blend.py", user_dir, str(out))
    assert r["object"] == "s" and r["vertices"] == 600
    assert r["frame_attrs"] == sorted(f"animus3d_f{t}_{w}" for t in range(6) for w in ("pos", "rot", "scale"))
    assert r["range"] == [1, 6] and r["frames_prop"] == 6 and r["modifiers"] == ["Animus3D Motion", "Animus3D Display"]


def test_bake_500k_gaussians_16_frames_under_3s(user_dir):
    r = run_scenario("bake_benchmark.py", user_dir, "500000", "16", timeout=300)
    print(f"\nbake of 16 frames x 500k Gaussians: {r['bake_s']:.2f} s (import {r['import_s']:.2f} s, "
          f"frame change {r['frame_change_s'] * 1e3:.0f} ms)")
    assert r["ok"] and r["bake_s"] < 3.0


@pytest.mark.slow
def test_artist_session_presets_address_delete_reports(user_dir, tmp_path, worker):
    from .harness import free_port

    dead = f"tcp://127.0.0.1:{free_port()}"
    try:
        r = run_scenario("artist_session.py", user_dir, str(tmp_path), dead, worker.address, timeout=300)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- worker log\n{worker.log_text()[-4000:]}") from None
    assert r["presets"] == ["draft", "standard", "high"]
    assert r["panels"] == {"ANIMUS3D_PT_panel": None, "ANIMUS3D_PT_worker": "ANIMUS3D_PT_panel",
                           "ANIMUS3D_PT_advanced": "ANIMUS3D_PT_panel"}, r["panels"]
    # The Frames field is the baked clip's length: refinement doubles (standard) or quadruples (high)
    # the frames it is sent, so the panel sends fewer and states the clip it gets.
    online = r["online"]  # Blender's online-access switch gates remote workers only
    assert online["remote_False"] == ["CANCELLED"] and "Online access is off" in online["remote_False_error"], online
    assert online["remote_True"] == ["FINISHED"] and online["remote_True_error"] == "", online
    assert online["loopback_False"] == online["loopback_True"] == ["FINISHED"], online
    assert r["clips"] == {"draft": [7, 7], "standard": [8, 4], "high": [8, 2], "standard_default": [32, False]}, r["clips"]
    assert r["export_poll_unbaked"] is False
    assert r["submitted_to"] == worker.address  # the changed preference, without pressing Connect
    assert r["running_stage"] == "msd" and r["scene_job_id_before"]
    assert r["phase_after_delete"] == "cancelled" and r["scene_job_id_after"] == ""
    assert r["worker_idle_after_delete"], "deleting the object must cancel its job on the worker"
    assert any(level == "WARNING" and "deleted" in text for level, text in r["reports"]), r["reports"]
    assert r["face_domain_is_splat"] is False and "domain" in r["face_domain_error"]
    assert r["retime"] == {"frames": 13, "fps": 24.0, "exact": True, "keeps_clip_frames": True}


def test_curve_keys_from_preferences_connect_to_an_authenticated_worker(user_dir, tmp_path):
    """Defect 8: the worker's public key and the client's key pair are set in the preferences and
    used by the next Connect; without them the authenticated worker does not answer."""
    import subprocess

    keys = tmp_path / "keys"
    subprocess.run([str(ANIMUS3D), "keygen", str(keys), "--client", "blender"], check=True, capture_output=True)
    worker = Worker(tmp_path, "--keys", str(keys))
    try:
        worker.wait_listening()
        r = run_scenario("curve_connect.py", user_dir, worker.address, str(keys / "server.key"),
                         str(keys / "clients" / "blender.key_secret"))
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- worker log\n{worker.log_text()[-3000:]}") from None
    finally:
        worker.kill()
    assert r["missing_file"] == ["CANCELLED"] and "not found" in r["missing_file_error"], r
    assert r["plain"]["welcome"] is False and r["plain"]["error"], r
    assert r["curve"] == {"welcome": True, "error": "", "device": "cpu", "encrypted": True}, r


def test_a_rotated_parented_object_is_animated_in_the_axes_the_artist_sees(user_dir, tmp_path):
    """The splat goes out turned by the object's world rotation (parent included); a world-axes rise and
    turn from the worker plays as a world-axes rise and turn after the bake."""
    r = run_scenario("world_transform.py", user_dir, str(tmp_path))
    assert r["sent_means_err"] < 1e-4 and r["sent_quats_err"] < 1e-5
    assert r["baked"]
    assert max(r["world_pos_err"]) < 1e-4, r["world_pos_err"]
    assert max(r["world_rot_err"]) < 1e-4, r["world_rot_err"]
    assert r["rotation_prop"] is None  # the job's records are cleared once it is baked


@pytest.mark.parametrize("blender", BLENDERS)
def test_the_display_shows_oriented_anisotropic_blended_gaussians(installed_in, tmp_path, blender):
    """Defect 10: each Gaussian is an ellipsoid with its own rotation and per-axis scale, faint
    Gaussians blend (a Cycles render has half-covered pixels), and Points mode stays for big splats."""
    r = run_scenario("display.py", copy_user_dir(installed_in(blender), tmp_path / "user"), str(tmp_path),
                     python=blender_python(blender))
    assert r["points_mode_default"] is False
    assert r["instances"] == 300, r
    assert r["centres_err"] < 1e-5 and r["frames_err"] < 1e-4 and r["anisotropic"], r
    assert r["covered"] > 50 and r["coloured"], r
    assert r["partial"] > 0.3 * r["covered"] and r["max_alpha"] > 0.5, r  # blended, not opaque discs
    if "points" in r:  # Blender exposes the evaluated point cloud from 4.3 on
        assert r["points"] == 300 and r["points_radius_ok"], r
    assert r["points_alpha_max"] > 0.2, r
