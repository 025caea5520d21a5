import numpy as np
import pytest

from animus3d_shared.deformation import Animation, quat_multiply, quat_normalise, quat_to_matrix


def random_quats(rng, n):
    return quat_normalise(rng.normal(size=(n, 4))).astype(np.float32)


def test_quaternion_product_composes_rotations():
    rng = np.random.default_rng(0)
    a, b = random_quats(rng, 50), random_quats(rng, 50)
    lhs = quat_to_matrix(quat_multiply(a, b))
    rhs = quat_to_matrix(a) @ quat_to_matrix(b)
    np.testing.assert_allclose(lhs, rhs, atol=1e-5)


def test_identity_animation_leaves_splat_unchanged():
    rng = np.random.default_rng(1)
    means = rng.normal(size=(10, 3)).astype(np.float32)
    quats = random_quats(rng, 10)
    scales = rng.normal(size=(10, 3)).astype(np.float32)
    anim = Animation.identity(3, 10)
    for f in range(3):
        np.testing.assert_array_equal(anim.frame_means(means, f), means)
        np.testing.assert_allclose(anim.frame_quats(quats, f), quats, atol=1e-7)
        np.testing.assert_array_equal(anim.frame_log_scales(scales, f), scales)


def test_animation_validation():
    good = Animation.identity(2, 4)
    with pytest.raises(ValueError, match="float32"):
        Animation(good.delta_position.astype(np.float64), good.delta_rotation, good.delta_scale)
    with pytest.raises(ValueError, match="disagree"):
        Animation(good.delta_position[:, :3], good.delta_rotation, good.delta_scale)
    bad = good.delta_scale.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        Animation(good.delta_position, good.delta_rotation, bad)
