"""GaussianSplat: validation of shapes, dtypes, finiteness and size, and its derived values."""

import numpy as np
import pytest

from animus3d_shared.splat import SH_C0, GaussianSplat, SplatError


def random_arrays(n=10, k=3, seed=0):
    rng = np.random.default_rng(seed)

    def f(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    return {
        "means": f(n, 3),
        "quats": f(n, 4),
        "log_scales": f(n, 3),
        "opacity_logits": f(n),
        "sh_dc": f(n, 3),
        "sh_rest": f(n, k, 3),
    }


def test_valid_splat_reports_count_degree_and_bounds():
    arrays = random_arrays(n=7, k=8)
    splat = GaussianSplat(**arrays)
    assert splat.count == 7
    assert splat.sh_degree == 2
    np.testing.assert_array_equal(splat.bbox_min, arrays["means"].min(axis=0))
    np.testing.assert_array_equal(splat.bbox_max, arrays["means"].max(axis=0))


@pytest.mark.parametrize("k, degree", [(0, 0), (3, 1), (8, 2), (15, 3)])
def test_sh_degree_follows_rest_count(k, degree):
    assert GaussianSplat(**random_arrays(k=k)).sh_degree == degree


def test_colors_and_opacities_activate_the_stored_values():
    arrays = random_arrays(n=3)
    arrays["sh_dc"] = np.array([[0, 0, 0], [1 / SH_C0, -1 / SH_C0, 0.2 / SH_C0], [10, -10, 0]], np.float32)
    arrays["opacity_logits"] = np.array([0.0, 50.0, -50.0], np.float32)
    splat = GaussianSplat(**arrays)
    np.testing.assert_allclose(splat.colors, [[0.5, 0.5, 0.5], [1.0, 0.0, 0.7], [1.0, 0.0, 0.5]], atol=1e-6)
    np.testing.assert_allclose(splat.opacities, [0.5, 1.0, 0.0], atol=1e-6)


@pytest.mark.parametrize(
    "field, bad_shape, fragment",
    [
        ("means", (10, 2), "means must have shape [N, 3]"),
        ("quats", (10, 3), "quats must have shape [N, 4]"),
        ("log_scales", (9, 3), "log_scales must have shape [N, 3]"),
        ("opacity_logits", (10, 1), "opacity_logits must have shape [N]"),
        ("sh_dc", (10, 4), "sh_dc must have shape [N, 3]"),
        ("sh_rest", (10, 4, 3), "K in (0, 3, 8, 15)"),
        ("sh_rest", (10, 3, 1), "sh_rest must have shape [N, K, 3]"),
    ],
)
def test_wrong_shapes_are_refused_by_name(field, bad_shape, fragment):
    arrays = random_arrays()
    arrays[field] = np.zeros(bad_shape, np.float32)
    with pytest.raises(SplatError) as info:
        GaussianSplat(**arrays)
    assert fragment in str(info.value)


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32])
def test_non_float32_arrays_are_refused(dtype):
    arrays = random_arrays()
    arrays["log_scales"] = arrays["log_scales"].astype(dtype)
    with pytest.raises(SplatError, match=r"log_scales must be float32, got"):
        GaussianSplat(**arrays)


def test_lists_are_refused():
    arrays = random_arrays()
    arrays["means"] = arrays["means"].tolist()
    with pytest.raises(SplatError, match="means must be a numpy array"):
        GaussianSplat(**arrays)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused_with_a_count(value):
    arrays = random_arrays()
    arrays["sh_dc"][[1, 4], 2] = value
    arrays["sh_dc"][4, 0] = value  # the same Gaussian twice counts once
    with pytest.raises(SplatError, match=r"sh_dc has non-finite values in 2 Gaussian\(s\)"):
        GaussianSplat(**arrays)


def test_zero_quaternions_are_refused():
    arrays = random_arrays()
    arrays["quats"][3] = 0.0
    with pytest.raises(SplatError, match="zero-length quaternions"):
        GaussianSplat(**arrays)


def test_size_limit_is_enforced_before_building():
    arrays = random_arrays(n=11)
    with pytest.raises(SplatError, match="11 Gaussians; the limit is 10"):
        GaussianSplat.from_arrays(arrays, max_gaussians=10)
    assert GaussianSplat.from_arrays(arrays, max_gaussians=11).count == 11


def test_missing_arrays_are_named():
    arrays = random_arrays()
    del arrays["quats"], arrays["sh_rest"]
    with pytest.raises(SplatError, match="missing splat array\\(s\\): quats, sh_rest"):
        GaussianSplat.from_arrays(arrays)


def test_part_ids_must_match_count_and_be_integers():
    arrays = random_arrays(n=4)
    with pytest.raises(SplatError, match="part_ids"):
        GaussianSplat(**arrays, part_ids=np.zeros(3, np.int32))
    with pytest.raises(SplatError, match="part_ids must be integers"):
        GaussianSplat(**arrays, part_ids=np.zeros(4, np.float32))


def test_subset_keeps_labels_and_copies():
    arrays = random_arrays(n=6)
    splat = GaussianSplat(**arrays, part_ids=np.arange(6, dtype=np.int32) % 2, part_names=("a", "b"))
    sub = splat.subset(np.array([1, 3, 5]))
    assert sub.count == 3 and sub.part_names == ("a", "b")
    np.testing.assert_array_equal(sub.part_ids, [1, 1, 1])
    np.testing.assert_array_equal(sub.means, arrays["means"][[1, 3, 5]])


def test_empty_splat_is_valid():
    splat = GaussianSplat(**random_arrays(n=0))
    assert splat.count == 0
    np.testing.assert_array_equal(splat.bbox_min, np.zeros(3))


def test_huge_quaternions_are_accepted_without_overflow_warnings():
    import warnings

    arrays = random_arrays(n=2)
    arrays["quats"] = np.full((2, 4), 3e38, np.float32)  # squares overflow float32
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert GaussianSplat(**arrays).count == 2
