"""Procedural sample splats: deterministic, labelled, sized and oriented as documented."""

from pathlib import Path

import numpy as np
import pytest

from animus3d_shared.ply import read_ply, write_ply
from animus3d_shared.samples import (
    CHARACTER_JOINTS,
    CHARACTER_PART_JOINTS,
    CHARACTER_PART_NAMES,
    Part,
    build_splat,
    character_parts,
    make_character,
    make_test_blob,
    part_pivots,
)
from animus3d_shared.splat import SplatError

ASSET = Path(__file__).resolve().parents[1] / "assets" / "sample_character.ply"


@pytest.fixture(scope="module")
def character():
    return make_character(seed=0)


def same_splat(a, b) -> bool:
    return all(x.tobytes() == y.tobytes() for x, y in zip(a.arrays().values(), b.arrays().values()))


def test_same_seed_same_splat_different_seed_different(character):
    assert same_splat(character, make_character(seed=0))
    other = make_character(seed=1)
    assert other.count == character.count
    assert not np.array_equal(other.means, character.means)
    assert same_splat(make_test_blob(seed=3), make_test_blob(seed=3))
    assert not same_splat(make_test_blob(seed=3), make_test_blob(seed=4))


def test_character_has_all_parts_and_enough_gaussians(character):
    assert character.count >= 20_000
    assert character.count == 24_000
    assert character.part_names == ("head", "body", "left_arm", "right_arm", "left_leg", "right_leg")
    assert character.part_names == CHARACTER_PART_NAMES
    counts = np.bincount(character.part_ids, minlength=len(character.part_names))
    assert len(counts) == 6 and (counts > 500).all(), counts
    assert character.part_ids.dtype == np.int32


def test_character_stands_on_the_floor_about_1_8_m_tall(character):
    lo, hi = character.bbox_min, character.bbox_max
    assert -0.01 <= lo[2] < 0.02
    assert 1.7 < hi[2] < 1.9
    assert hi[0] - lo[0] < 0.8 and hi[1] - lo[1] < 0.5  # a person, not a wall


def test_character_faces_minus_y_with_its_left_on_plus_x(character):
    def centre(name):
        return character.means[character.part_ids == character.part_names.index(name)].mean(axis=0)

    assert centre("left_arm")[0] > 0.15 and centre("right_arm")[0] < -0.15
    assert centre("left_leg")[0] > 0.03 and centre("right_leg")[0] < -0.03
    assert centre("head")[2] > centre("body")[2] > centre("left_leg")[2]
    # the eyes (the darkest Gaussians of the head) are on its −Y side, one each side of x = 0
    is_head = character.part_ids == 0
    dark = is_head & (character.colors.sum(axis=1) < 0.3)
    assert dark.sum() > 20
    assert (character.means[dark, 1] < -0.07).all()
    assert (character.means[dark, 0] > 0.01).any() and (character.means[dark, 0] < -0.01).any()
    # shoes point forward too
    feet = character.means[character.means[:, 2] < 0.05]
    assert -feet[:, 1].min() > feet[:, 1].max()


def test_joints_sit_where_the_parts_meet(character):
    for part, joint in CHARACTER_PART_JOINTS.items():
        assert joint in CHARACTER_JOINTS
        points = character.means[character.part_ids == character.part_names.index(part)]
        nearest = np.linalg.norm(points - CHARACTER_JOINTS[joint], axis=1).min()
        assert nearest < 0.12, (part, joint, nearest)
    pivots = part_pivots(character_parts())
    for part, joint in CHARACTER_PART_JOINTS.items():
        np.testing.assert_allclose(pivots[part], CHARACTER_JOINTS[joint])


def test_gaussians_look_like_a_solid_surface(character):
    assert (character.opacities > 0.9).mean() > 0.9
    scales = np.exp(character.log_scales)
    assert 0.001 < np.median(scales[:, :2]) < 0.05  # small, a few millimetres to centimetres
    assert (scales[:, 2] <= scales[:, :2].min(axis=1) + 1e-9).all()  # flat along the normal
    np.testing.assert_allclose(np.linalg.norm(character.quats, axis=1), 1.0, atol=1e-5)
    colours = character.colors
    assert colours.std(axis=0).min() > 0.05  # several colours, not one grey blob
    assert np.abs(character.sh_rest).max() < 0.2  # small view-dependent terms


def test_discs_lie_in_the_surface_of_a_sphere():
    ball = build_splat([Part("ball", "ellipsoid", (0, 0, 0), (1, 1, 1), (0.5, 0.5, 0.5))], 3000, seed=2)
    w, x, y, z = ball.quats.T
    # the local z axis (the disc normal) of each Gaussian in world space
    normal = np.stack([2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y)], axis=1)
    radial = ball.means / np.linalg.norm(ball.means, axis=1, keepdims=True)
    on_surface = np.linalg.norm(ball.means, axis=1) > 0.9
    assert np.median(np.abs((normal * radial).sum(axis=1))[on_surface]) > 0.99


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_sh_degree_is_configurable(degree):
    blob = make_test_blob(seed=0, count=500, sh_degree=degree)
    assert blob.sh_degree == degree and blob.count == 500


def test_test_blob_is_small_and_labelled():
    blob = make_test_blob()
    assert blob.count == 2000
    assert blob.part_names == ("body", "cap")
    assert set(np.unique(blob.part_ids)) == {0, 1}
    assert blob.bbox_min[2] >= 0.0 and blob.bbox_max[2] < 0.6


@pytest.mark.parametrize("shape", ["ellipsoid", "capsule", "box"])
def test_every_shape_stays_inside_its_bounds_and_rotates(shape):
    quarter_turn_about_x = (np.cos(np.pi / 4), np.sin(np.pi / 4), 0.0, 0.0)  # local z -> world -y
    part = Part("p", shape, (1.0, 2.0, 3.0), (0.1, 0.2, 0.5), (1, 0, 0), rotation=quarter_turn_about_x)
    splat = build_splat([part], 2000, seed=0)
    offset = splat.means - np.array([1.0, 2.0, 3.0])
    extent = np.abs(offset).max(axis=0)
    assert extent[0] <= 0.1 + 1e-6 and extent[2] <= 0.2 + 1e-6 and extent[1] <= 0.5 + 1e-6
    assert extent[1] > 0.45  # the long axis now runs along y


def test_pieces_with_one_name_share_a_label_and_counts_add_up():
    parts = [
        Part("a", "box", (0, 0, 0), (0.1, 0.1, 0.1), (1, 0, 0)),
        Part("b", "ellipsoid", (1, 0, 0), (0.1, 0.1, 0.1), (0, 1, 0)),
        Part("a", "capsule", (2, 0, 0), (0.1, 0.1, 0.3), (0, 0, 1), density=2.0),
    ]
    splat = build_splat(parts, 1001, seed=0)
    assert splat.count == 1001 and splat.part_names == ("a", "b")
    assert set(np.unique(splat.part_ids[splat.means[:, 0] > 1.5])) == {0}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(shape="cone"), "shape must be one of"),
        (dict(radii=(0.1, 0.0, 0.1)), "radii must be three positive numbers"),
        (dict(density=0.0), "density must be positive"),
    ],
)
def test_bad_parts_are_refused(kwargs, message):
    base = dict(name="p", shape="box", center=(0, 0, 0), radii=(1, 1, 1), color=(1, 1, 1))
    with pytest.raises(SplatError, match=message):
        Part(**{**base, **kwargs})


def test_bad_build_arguments_are_refused():
    part = Part("p", "box", (0, 0, 0), (1, 1, 1), (1, 1, 1))
    with pytest.raises(SplatError, match="at least one part"):
        build_splat([], 10)
    with pytest.raises(SplatError, match="sh_degree"):
        build_splat([part], 10, sh_degree=4)
    with pytest.raises(SplatError, match="count must be at least"):
        build_splat([part, part], 1)


def test_committed_asset_is_the_regenerated_character(tmp_path, character):
    fresh = tmp_path / "sample_character.ply"
    write_ply(fresh, character)
    assert ASSET.stat().st_size < 3 * 1024 * 1024
    assert fresh.read_bytes() == ASSET.read_bytes(), "regenerate with write_ply(make_character(seed=0))"
    assert same_splat(read_ply(ASSET), character)
