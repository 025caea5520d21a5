"""INRIA 3DGS PLY I/O: bit-exact round trips, tolerant reading, and clear refusals."""

import numpy as np
import plyfile
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from animus3d_shared.ply import (
    PlyError,
    read_ply,
    read_ply_info,
    splat_to_vertex_table,
    vertex_property_names,
    write_ply,
)
from animus3d_shared.splat import REST_COUNTS, GaussianSplat, SplatError


def random_splat(n=50, degree=1, seed=0):
    rng = np.random.default_rng(seed)
    k = REST_COUNTS[degree]

    def f(*shape):
        return (rng.standard_normal(shape) * 3).astype(np.float32)

    return GaussianSplat(
        means=f(n, 3), quats=f(n, 4), log_scales=f(n, 3), opacity_logits=f(n), sh_dc=f(n, 3), sh_rest=f(n, k, 3)
    )


def assert_bit_equal(a: GaussianSplat, b: GaussianSplat):
    for name, arr in a.arrays().items():
        other = b.arrays()[name]
        assert other.dtype == np.float32 and other.shape == arr.shape, name
        assert arr.tobytes() == other.tobytes(), f"{name} differs"


def write_table(path, columns: dict, *, text=False, byte_order="<", extra_elements=()):
    """Write a vertex element with exactly these columns (in this order and with these dtypes)."""
    n = len(next(iter(columns.values())))
    table = np.empty(n, dtype=[(name, np.asarray(values).dtype) for name, values in columns.items()])
    for name, values in columns.items():
        table[name] = values
    elements = [plyfile.PlyElement.describe(table, "vertex"), *extra_elements]
    plyfile.PlyData(elements, text=text, byte_order=byte_order).write(str(path))
    return path


def columns_of(splat: GaussianSplat, include_normals=True) -> dict:
    table = splat_to_vertex_table(splat, include_normals=include_normals)
    return {name: table[name].copy() for name in table.dtype.names}


def refusal(path, **kwargs) -> str:
    with pytest.raises(PlyError) as info:
        read_ply(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.strip() == message
    return message


# ---- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
@pytest.mark.parametrize("ascii", [False, True], ids=["binary", "ascii"])
def test_round_trip_is_bit_exact(tmp_path, degree, ascii):
    splat = random_splat(degree=degree, seed=degree)
    path = tmp_path / "s.ply"
    write_ply(path, splat, ascii=ascii)
    back = read_ply(path)
    assert back.sh_degree == degree
    assert_bit_equal(splat, back)


@pytest.mark.parametrize("ascii", [False, True], ids=["binary", "ascii"])
def test_write_read_write_gives_identical_bytes(tmp_path, ascii):
    first, second = tmp_path / "a.ply", tmp_path / "b.ply"
    write_ply(first, random_splat(degree=3), ascii=ascii)
    write_ply(second, read_ply(first), ascii=ascii)
    assert first.read_bytes() == second.read_bytes()


finite_f32 = hnp.from_dtype(np.dtype(np.float32), allow_nan=False, allow_infinity=False)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=hnp.arrays(np.float32, (4, 3 + 4 + 3 + 1 + 3 + 9), elements=finite_f32), ascii=st.booleans())
def test_any_finite_float32_survives_a_round_trip(tmp_path, values, ascii):
    values[:, 3] = np.where(np.abs(values[:, 3]) < 1e-3, 1.0, values[:, 3])  # keep quaternions non-zero
    n = values.shape[0]
    splat = GaussianSplat(
        means=values[:, 0:3].copy(),
        quats=values[:, 3:7].copy(),
        log_scales=values[:, 7:10].copy(),
        opacity_logits=values[:, 10].copy(),
        sh_dc=values[:, 11:14].copy(),
        sh_rest=values[:, 14:23].reshape(n, 3, 3).copy(),
    )
    path = tmp_path / "h.ply"
    write_ply(path, splat, ascii=ascii)
    assert_bit_equal(splat, read_ply(path))


def test_f_rest_is_stored_channel_major(tmp_path):
    splat = random_splat(n=2, degree=2)
    table = splat_to_vertex_table(splat)
    k = 8
    for c in range(3):
        for i in range(k):
            np.testing.assert_array_equal(table[f"f_rest_{c * k + i}"], splat.sh_rest[:, i, c])
    # and reading maps it back the same way from a file written independently of write_ply
    path = write_table(tmp_path / "r.ply", columns_of(splat))
    np.testing.assert_array_equal(read_ply(path).sh_rest, splat.sh_rest)


def test_written_layout_is_the_inria_one(tmp_path):
    path = tmp_path / "s.ply"
    write_ply(path, random_splat(degree=1))
    data = plyfile.PlyData.read(str(path))
    assert not data.text and data.byte_order == "<"
    names = [p.name for p in data["vertex"].properties]
    assert names == vertex_property_names(1)
    assert names[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    assert names[-8:] == ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    assert all(p.val_dtype in ("f4", "float32", "float") for p in data["vertex"].properties)
    assert not data["vertex"]["nx"].any()


def test_normals_can_be_left_out(tmp_path):
    path = tmp_path / "s.ply"
    splat = random_splat(degree=0)
    write_ply(path, splat, include_normals=False)
    info = read_ply_info(path)
    assert "nx" not in info.attributes and info.attributes[:3] == ["x", "y", "z"]
    assert_bit_equal(splat, read_ply(path))


def test_empty_splat_round_trips(tmp_path):
    path = tmp_path / "empty.ply"
    write_ply(path, random_splat(n=0, degree=2))
    back = read_ply(path)
    assert back.count == 0 and back.sh_degree == 2


# ---- tolerant reading -----------------------------------------------------------------------


def test_shuffled_properties_and_extras_are_accepted_and_listed(tmp_path):
    splat = random_splat(degree=2, seed=5)
    columns = columns_of(splat)
    columns["red"] = np.arange(splat.count, dtype=np.uint8)
    columns["confidence"] = np.linspace(0, 1, splat.count).astype(np.float64)
    order = list(columns)
    np.random.default_rng(1).shuffle(order)
    face = plyfile.PlyElement.describe(np.zeros(2, dtype=[("flag", "i4")]), "face")
    path = write_table(tmp_path / "shuffled.ply", {name: columns[name] for name in order}, extra_elements=[face])
    assert_bit_equal(splat, read_ply(path))
    info = read_ply_info(path)
    assert info.attributes == order
    assert {"red", "confidence"} <= set(info.attributes)


@pytest.mark.parametrize("byte_order", ["<", ">"])
def test_double_properties_are_cast_to_float32(tmp_path, byte_order):
    splat = random_splat(degree=1)
    columns = {name: values.astype(np.float64) for name, values in columns_of(splat).items()}
    path = write_table(tmp_path / "double.ply", columns, byte_order=byte_order)
    assert_bit_equal(splat, read_ply(path))  # float32 → float64 → float32 is exact


def test_big_endian_files_are_read_and_reported(tmp_path):
    splat = random_splat(degree=3)
    path = write_table(tmp_path / "be.ply", columns_of(splat), byte_order=">")
    assert_bit_equal(splat, read_ply(path))
    assert read_ply_info(path).format == "binary_big_endian"


def test_small_integer_properties_are_cast(tmp_path):
    splat = random_splat(n=5, degree=0)
    columns = columns_of(splat)
    columns["opacity"] = np.array([-3, -1, 0, 1, 100], np.int16)
    back = read_ply(write_table(tmp_path / "int16.ply", columns))
    np.testing.assert_array_equal(back.opacity_logits, [-3, -1, 0, 1, 100])


def test_info_summarises_the_file(tmp_path):
    splat = random_splat(n=30, degree=3)
    path = tmp_path / "s.ply"
    write_ply(path, splat, ascii=True)
    info = read_ply_info(path)
    assert (info.count, info.sh_degree, info.format) == (30, 3, "ascii")
    np.testing.assert_array_equal(info.bbox_min, splat.means.min(axis=0))
    np.testing.assert_array_equal(info.bbox_max, splat.means.max(axis=0))
    assert info.attributes == vertex_property_names(3)
    d = info.to_dict()
    assert d["count"] == 30 and d["bbox_min"] == [float(v) for v in splat.means.min(axis=0)]


# ---- refusals -------------------------------------------------------------------------------


def test_ply_error_is_a_splat_error():
    assert issubclass(PlyError, SplatError)


def test_missing_file_and_directory(tmp_path):
    assert "no such file" in refusal(tmp_path / "nope.ply")
    assert "is a directory" in refusal(tmp_path)


@pytest.mark.parametrize("content", [b"", b"hello\n", bytes(range(256)) * 4, b"\x89PNG\r\n\x1a\n"])
def test_not_a_ply(tmp_path, content):
    path = tmp_path / "x.ply"
    path.write_bytes(content)
    assert "not a PLY file" in refusal(path)


def test_truncated_binary_data(tmp_path):
    path = tmp_path / "t.ply"
    write_ply(path, random_splat(n=50))
    path.write_bytes(path.read_bytes()[:-7])
    assert "truncated PLY: element 'vertex' ends after 49 of 50 rows" in refusal(path)


def test_truncated_header(tmp_path):
    path = tmp_path / "t.ply"
    write_ply(path, random_splat(n=50))
    path.write_bytes(path.read_bytes()[:60])
    assert "truncated PLY header" in refusal(path)


@pytest.mark.parametrize("cut", [200, 5000])
def test_truncated_ascii_data(tmp_path, cut):
    path = tmp_path / "t.ply"
    write_ply(path, random_splat(n=50), ascii=True)
    path.write_bytes(path.read_bytes()[:-cut])
    assert "truncated" in refusal(path)


def test_garbage_in_ascii_data(tmp_path):
    path = tmp_path / "g.ply"
    write_ply(path, random_splat(n=5), ascii=True)
    text = path.read_bytes()
    head, body = text.split(b"end_header\n")
    path.write_bytes(head + b"end_header\n" + body.replace(b" ", b" banana ", 1))
    message = refusal(path)
    assert "malformed PLY" in message


def test_no_vertex_element(tmp_path):
    face = plyfile.PlyElement.describe(np.zeros(3, dtype=[("x", "f4")]), "face")
    path = tmp_path / "nv.ply"
    plyfile.PlyData([face]).write(str(path))
    assert "no 'vertex' element (elements: face)" in refusal(path)


@pytest.mark.parametrize("dropped", [("opacity",), ("rot_0", "scale_2")])
def test_missing_required_properties_are_named(tmp_path, dropped):
    columns = columns_of(random_splat())
    for name in dropped:
        del columns[name]
    message = refusal(write_table(tmp_path / "m.ply", columns))
    assert "missing required vertex propert" in message
    for name in dropped:
        assert name in message


def test_wrong_f_rest_count(tmp_path):
    columns = columns_of(random_splat(degree=1))
    del columns["f_rest_8"]
    message = refusal(write_table(tmp_path / "fr.ply", columns))
    assert "has 8 f_rest properties; expected 0, 9, 24 or 45" in message


def test_misnumbered_f_rest(tmp_path):
    columns = columns_of(random_splat(degree=1))
    columns["f_rest_9"] = columns.pop("f_rest_4")
    assert "missing f_rest_4" in refusal(write_table(tmp_path / "fr.ply", columns))


@pytest.mark.parametrize("dtype", [np.int32, np.uint32])
def test_integer_types_that_do_not_fit_float32_are_refused(tmp_path, dtype):
    columns = columns_of(random_splat())
    columns["scale_1"] = np.ones(len(columns["x"]), dtype)
    message = refusal(write_table(tmp_path / "i.ply", columns))
    assert f"property 'scale_1' has type {np.dtype(dtype).name}, which cannot be cast safely to float32" in message


@pytest.mark.parametrize("ascii", [False, True], ids=["binary", "ascii"])
def test_nan_and_inf_are_refused_with_property_and_count(tmp_path, ascii):
    columns = columns_of(random_splat(n=20))
    columns["opacity"][[2, 5, 7]] = [np.nan, np.inf, -np.inf]
    message = refusal(write_table(tmp_path / "nan.ply", columns, text=ascii))
    assert "property 'opacity' has 3 non-finite value(s)" in message


def test_doubles_beyond_float32_range_are_refused(tmp_path):
    columns = {name: values.astype(np.float64) for name, values in columns_of(random_splat(n=4)).items()}
    columns["x"][1] = 1e300
    message = refusal(write_table(tmp_path / "big.ply", columns))
    assert "property 'x' has 1 value(s) beyond the float32 range" in message


def test_list_property_in_place_of_a_scalar_is_refused(tmp_path):
    n = 3
    columns = columns_of(random_splat(n=n))
    table = np.empty(n, dtype=[(name, "f4") for name in columns if name != "opacity"] + [("opacity", "O")])
    for name, values in columns.items():
        if name != "opacity":
            table[name] = values
    for i in range(n):
        table["opacity"][i] = np.array([1.0, 2.0], np.float32)
    path = tmp_path / "list.ply"
    plyfile.PlyData([plyfile.PlyElement.describe(table, "vertex")]).write(str(path))
    assert "property 'opacity' is a list" in refusal(path)


def test_zero_quaternions_become_a_ply_error(tmp_path):
    columns = columns_of(random_splat())
    for name in ("rot_0", "rot_1", "rot_2", "rot_3"):
        columns[name][0] = 0.0
    message = refusal(write_table(tmp_path / "q.ply", columns))
    assert "zero-length quaternions" in message and "q.ply" in message


def test_too_many_gaussians(tmp_path):
    path = tmp_path / "s.ply"
    write_ply(path, random_splat(n=50))
    assert "has 50 Gaussians; the limit is 49" in refusal(path, max_gaussians=49)
    assert read_ply(path, max_gaussians=50).count == 50
    with pytest.raises(PlyError, match="limit is 10"):
        read_ply_info(path, max_gaussians=10)


def test_write_failure_is_a_ply_error_and_leaves_nothing(tmp_path):
    with pytest.raises(PlyError, match="cannot write file"):
        write_ply(tmp_path / "missing-dir" / "s.ply", random_splat())
    target = tmp_path / "s.ply"
    write_ply(target, random_splat())
    assert [p.name for p in tmp_path.iterdir()] == ["s.ply"]


def test_write_refuses_non_splats(tmp_path):
    with pytest.raises(PlyError, match="needs a GaussianSplat"):
        write_ply(tmp_path / "s.ply", {"means": np.zeros((1, 3))})
