"""Read and write Gaussian splats in the INRIA 3DGS PLY layout.

One ``vertex`` element, one row per Gaussian, float properties::

    x y z [nx ny nz] f_dc_0..2 f_rest_0..(3K-1) opacity scale_0..2 rot_0..3

``rot_0`` is the quaternion's w; ``f_rest_{c*K + k}`` holds ``sh_rest[:, k, c]`` (channel-major),
so the f_rest count (0, 9, 24 or 45) fixes the SH degree (0..3). Properties may come in any
order; properties we do not use are ignored but listed by :func:`read_ply_info`. Binary
(either byte order) and ASCII files are read; double-typed and small-integer properties are cast
to float32. Everything that is wrong with a file raises :class:`PlyError` with a one-line message.

Writing what was read gives the same arrays bit for bit (float32 throughout); normals, which a
splat does not carry, are written as zeros.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plyfile

from .splat import DEFAULT_MAX_GAUSSIANS, REST_COUNTS, GaussianSplat, SplatError

PathLike = str | os.PathLike

POSITION_PROPS = ("x", "y", "z")
NORMAL_PROPS = ("nx", "ny", "nz")
DC_PROPS = ("f_dc_0", "f_dc_1", "f_dc_2")
OPACITY_PROP = "opacity"
SCALE_PROPS = ("scale_0", "scale_1", "scale_2")
ROTATION_PROPS = ("rot_0", "rot_1", "rot_2", "rot_3")
REQUIRED_PROPS = POSITION_PROPS + DC_PROPS + (OPACITY_PROP,) + SCALE_PROPS + ROTATION_PROPS

_REST_PREFIX = "f_rest_"
_DEGREE_BY_REST_PROPS = {3 * k: degree for degree, k in REST_COUNTS.items()}  # 0, 9, 24, 45 -> degree


class PlyError(SplatError):
    """A PLY file cannot be read as (or written from) a Gaussian splat; the message is one line."""


@dataclass(frozen=True)
class PlyInfo:
    """A summary of a splat PLY file, as ``animus3d inspect`` prints it."""

    path: str
    format: str  # 'binary_little_endian', 'binary_big_endian' or 'ascii'
    count: int
    sh_degree: int
    bbox_min: np.ndarray  # [3] float32
    bbox_max: np.ndarray  # [3] float32
    attributes: list[str]  # every vertex property in file order, including ones we ignore

    def to_dict(self) -> dict:
        """Plain JSON-ready values."""
        return {
            "path": self.path,
            "format": self.format,
            "count": self.count,
            "sh_degree": self.sh_degree,
            "bbox_min": [float(v) for v in self.bbox_min],
            "bbox_max": [float(v) for v in self.bbox_max],
            "attributes": list(self.attributes),
        }


# ---- reading ------------------------------------------------------------------------------


def read_ply(path: PathLike, *, max_gaussians: int = DEFAULT_MAX_GAUSSIANS) -> GaussianSplat:
    """Read an INRIA 3DGS PLY file into a validated :class:`GaussianSplat`.

    Raises :class:`PlyError` for an unreadable, truncated or malformed file, a missing or
    non-float property, non-finite values, or more than ``max_gaussians`` rows.
    """
    splat, _ = _read(path, max_gaussians)
    return splat


def read_ply_info(path: PathLike, *, max_gaussians: int = DEFAULT_MAX_GAUSSIANS) -> PlyInfo:
    """Read and validate a splat PLY file and summarise it (count, SH degree, bounds, properties)."""
    splat, (fmt, attributes) = _read(path, max_gaussians)
    return PlyInfo(
        path=str(path),
        format=fmt,
        count=splat.count,
        sh_degree=splat.sh_degree,
        bbox_min=np.asarray(splat.bbox_min, np.float32),
        bbox_max=np.asarray(splat.bbox_max, np.float32),
        attributes=attributes,
    )


def _read(path: PathLike, max_gaussians: int) -> tuple[GaussianSplat, tuple[str, list[str]]]:
    data = _load_plydata(path)
    try:
        fmt = "ascii" if data.text else ("binary_big_endian" if data.byte_order == ">" else "binary_little_endian")
        vertex = _vertex_element(data, path)
        attributes = [p.name for p in vertex.properties]
        if vertex.count > max_gaussians:
            raise PlyError(f"{path}: has {vertex.count} Gaussians; the limit is {max_gaussians}")
        splat = _splat_from_vertex(vertex, path)
    finally:
        del data  # drop any memory map of the file before returning
    return splat, (fmt, attributes)


def _load_plydata(path: PathLike) -> plyfile.PlyData:
    """Parse the file with plyfile, turning every failure into a one-line PlyError."""
    path_obj = Path(path)
    if not path_obj.exists():
        raise PlyError(f"{path}: no such file")
    if path_obj.is_dir():
        raise PlyError(f"{path}: is a directory, not a PLY file")
    try:
        with open(path_obj, "rb") as stream:
            if stream.read(3) != b"ply":
                raise PlyError(f"{path}: not a PLY file (it does not start with 'ply')")
            stream.seek(0)
            # Binary elements are memory-mapped (copy-on-write): cheap even for large files.
            return plyfile.PlyData.read(stream, mmap="c")
    except PlyError:
        raise
    except plyfile.PlyHeaderParseError as exc:
        if "end-of-file" in exc.message:
            raise PlyError(f"{path}: truncated PLY header (no 'end_header')") from None
        raise PlyError(f"{path}: malformed PLY header: {_one_line(exc)}") from None
    except plyfile.PlyElementParseError as exc:
        if "end-of-file" in exc.message and exc.element is not None:
            rows = "" if exc.row is None else f" after {exc.row} of {exc.element.count} rows"
            raise PlyError(f"{path}: truncated PLY: element '{exc.element.name}' ends{rows}") from None
        if "end-of-line" in exc.message and exc.element is not None and exc.prop is not None:
            raise PlyError(
                f"{path}: truncated or malformed PLY: element '{exc.element.name}' row {exc.row} "
                f"ends before property '{exc.prop.name}'"
            ) from None
        raise PlyError(f"{path}: malformed PLY data: {_one_line(exc)}") from None
    except MemoryError:
        raise PlyError(f"{path}: not enough memory to read this PLY (is its header sane?)") from None
    except OSError as exc:
        raise PlyError(f"{path}: cannot read file: {exc.strerror or _one_line(exc)}") from None
    except Exception as exc:  # plyfile raises ValueError/TypeError/UnicodeError for odd input
        raise PlyError(f"{path}: cannot parse PLY: {type(exc).__name__}: {_one_line(exc)}") from None


def _vertex_element(data: plyfile.PlyData, path: PathLike) -> plyfile.PlyElement:
    names = [e.name for e in data.elements]
    if "vertex" not in names:
        listed = ", ".join(names) if names else "none"
        raise PlyError(f"{path}: no 'vertex' element (elements: {listed})")
    return data["vertex"]


def _splat_from_vertex(vertex: plyfile.PlyElement, path: PathLike) -> GaussianSplat:
    props = {p.name: p for p in vertex.properties}
    missing = [name for name in REQUIRED_PROPS if name not in props]
    if missing:
        raise PlyError(f"{path}: missing required vertex propert{'y' if len(missing) == 1 else 'ies'}: {', '.join(missing)}")

    rest_names = [name for name in props if name.startswith(_REST_PREFIX)]
    degree = _DEGREE_BY_REST_PROPS.get(len(rest_names))
    if degree is None:
        raise PlyError(
            f"{path}: has {len(rest_names)} f_rest properties; expected 0, 9, 24 or 45 (SH degree 0-3)"
        )
    k = REST_COUNTS[degree]
    expected_rest = [f"{_REST_PREFIX}{i}" for i in range(3 * k)]
    absent = [name for name in expected_rest if name not in props]
    if absent:
        raise PlyError(f"{path}: f_rest properties are not numbered 0..{3 * k - 1}: missing {absent[0]}")

    table = vertex.data
    n = vertex.count

    def column(name: str) -> np.ndarray:
        return _float32_column(table, props[name], path)

    def stack(names: tuple[str, ...] | list[str]) -> np.ndarray:
        out = np.empty((n, len(names)), np.float32)
        for j, name in enumerate(names):
            out[:, j] = column(name)
        return out

    arrays = {
        "means": stack(POSITION_PROPS),
        "quats": stack(ROTATION_PROPS),
        "log_scales": stack(SCALE_PROPS),
        "opacity_logits": np.ascontiguousarray(column(OPACITY_PROP)),
        "sh_dc": stack(DC_PROPS),
        # f_rest_{c*K+k} -> sh_rest[:, k, c]: columns are channel-major, so [N, 3, K] -> [N, K, 3].
        "sh_rest": np.ascontiguousarray(stack(expected_rest).reshape(n, 3, k).transpose(0, 2, 1)),
    }
    try:
        return GaussianSplat.from_arrays(arrays)
    except SplatError as exc:
        raise PlyError(f"{path}: {_one_line(exc)}") from None


def _float32_column(table: np.ndarray, prop: plyfile.PlyProperty, path: PathLike) -> np.ndarray:
    """One property as float32, refusing lists, unsafe integer types and non-finite values."""
    if isinstance(prop, plyfile.PlyListProperty):
        raise PlyError(f"{path}: property '{prop.name}' is a list; expected a scalar float")
    raw = np.asarray(table[prop.name])
    kind = raw.dtype.kind
    if kind == "f":
        pass  # float16/32/64: cast below; doubles are narrowed to float32
    elif kind in "iu" and np.can_cast(raw.dtype, np.float32, casting="safe"):
        pass  # (u)int8 / (u)int16 are exact in float32
    else:
        raise PlyError(
            f"{path}: property '{prop.name}' has type {raw.dtype.name}, "
            "which cannot be cast safely to float32"
        )
    if kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(raw)))
        if bad:
            raise PlyError(f"{path}: property '{prop.name}' has {bad} non-finite value(s) (NaN or inf)")
    with np.errstate(over="ignore"):
        values = raw.astype(np.float32)
    if kind == "f" and raw.dtype.itemsize > 4:
        over = int(np.count_nonzero(~np.isfinite(values)))
        if over:
            raise PlyError(f"{path}: property '{prop.name}' has {over} value(s) beyond the float32 range")
    return values


# ---- writing ------------------------------------------------------------------------------


def vertex_property_names(sh_degree: int, *, include_normals: bool = True) -> list[str]:
    """The property names, in the order :func:`write_ply` writes them."""
    names = list(POSITION_PROPS)
    if include_normals:
        names += NORMAL_PROPS
    names += DC_PROPS
    names += [f"{_REST_PREFIX}{i}" for i in range(3 * REST_COUNTS[sh_degree])]
    names += [OPACITY_PROP, *SCALE_PROPS, *ROTATION_PROPS]
    return names


def splat_to_vertex_table(splat: GaussianSplat, *, include_normals: bool = True) -> np.ndarray:
    """The splat as a little-endian float32 structured array (one record per Gaussian)."""
    n, k = splat.count, REST_COUNTS[splat.sh_degree]
    names = vertex_property_names(splat.sh_degree, include_normals=include_normals)
    table = np.zeros(n, dtype=[(name, "<f4") for name in names])
    columns: dict[str, np.ndarray] = {}
    for j, name in enumerate(POSITION_PROPS):
        columns[name] = splat.means[:, j]
    for j, name in enumerate(DC_PROPS):
        columns[name] = splat.sh_dc[:, j]
    rest = splat.sh_rest.transpose(0, 2, 1).reshape(n, 3 * k)  # [N, K, 3] -> channel-major [N, 3K]
    for i in range(3 * k):
        columns[f"{_REST_PREFIX}{i}"] = rest[:, i]
    columns[OPACITY_PROP] = splat.opacity_logits
    for j, name in enumerate(SCALE_PROPS):
        columns[name] = splat.log_scales[:, j]
    for j, name in enumerate(ROTATION_PROPS):
        columns[name] = splat.quats[:, j]
    for name, values in columns.items():
        table[name] = values  # normals stay zero
    return table


def write_ply(path: PathLike, splat: GaussianSplat, *, ascii: bool = False, include_normals: bool = True) -> None:
    """Write ``splat`` as an INRIA 3DGS PLY (binary little-endian unless ``ascii``).

    The file is written next to ``path`` and moved into place, so a failed write never leaves a
    half-written file under the final name. Raises :class:`PlyError` if it cannot be written.
    """
    if not isinstance(splat, GaussianSplat):
        raise PlyError(f"write_ply needs a GaussianSplat, got {type(splat).__name__}")
    element = plyfile.PlyElement.describe(splat_to_vertex_table(splat, include_normals=include_normals), "vertex")
    data = plyfile.PlyData([element], text=ascii, byte_order="<")
    target = Path(path)
    tmp_path = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp_path, "wb") as stream:
            data.write(stream)
        os.replace(tmp_path, target)
    except OSError as exc:
        raise PlyError(f"{path}: cannot write file: {exc.strerror or _one_line(exc)}") from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
