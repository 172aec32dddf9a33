"""Reading and writing IDX files, the format of MNIST and Fashion-MNIST.

Used in chapters: none directly; imported by ``lmcourse.data.images``.

Format (LeCun et al., http://yann.lecun.com/exdb/mnist/, "FILE FORMATS FOR THE MNIST DATABASE"):
a 4-byte magic number ``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian uint32 sizes, then the
data in C order. Type ``0x08`` is unsigned byte, the only type the datasets here use.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
           0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09}


class IdxFormatError(ValueError):
    """A file is not a well-formed IDX file (bad magic number, type, sizes or length)."""


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse the bytes of an (uncompressed) IDX file into a NumPy array.

    Args:
        raw: the whole file content.
        name: used in error messages (e.g. the file path).

    Returns:
        Array of shape given by the header (e.g. ``(60000, 28, 28)`` uint8 for images,
        ``(60000,)`` uint8 for labels), in native byte order.

    Raises:
        IdxFormatError: if the magic number is wrong, the type code unknown, or the length does
            not match the header (a truncated or padded file).
    """
    if len(raw) < 4:
        raise IdxFormatError(f"{name}: {len(raw)} bytes is too short for an IDX header (4 bytes "
                             "magic number). The file is truncated; delete it and fetch it again.")
    zero1, zero2, type_code, ndim = raw[0], raw[1], raw[2], raw[3]
    if zero1 != 0 or zero2 != 0 or type_code not in _DTYPES or not 1 <= ndim <= 4:
        hint = " (it starts like gzip: decompress it first)" if raw[:2] == b"\x1f\x8b" else ""
        raise IdxFormatError(f"{name}: bad IDX magic number {raw[:4].hex()}{hint}; expected "
                             "00 00 08 0N for unsigned-byte data with N dimensions.")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IdxFormatError(f"{name}: file ends inside its header ({len(raw)} < {header} bytes).")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_DTYPES[type_code])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise IdxFormatError(f"{name}: header says shape {shape} ({expected} bytes in all) but the "
                             f"file has {len(raw)} bytes: it is truncated or corrupt. Delete it "
                             "and fetch it again.")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (``.gz`` is decompressed transparently); see :func:`parse_idx`.

    Raises:
        IdxFormatError: the file cannot be read or decompressed (missing, corrupt or truncated),
            or its content is not valid IDX (see :func:`parse_idx`).
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:  # gzip's errors on corrupt/truncated archives
        raise IdxFormatError(f"{path}: cannot be read ({exc}). Delete it and fetch it again.") from exc
    return parse_idx(raw, str(path))


def encode_idx(array: np.ndarray) -> bytes:
    """Encode a uint8 or int8 array as IDX bytes (the inverse of :func:`parse_idx`).

    Raises:
        ValueError: for other dtypes or more than 4 dimensions.
    """
    array = np.asarray(array)
    if array.dtype not in _CODES or not 1 <= array.ndim <= 4:
        raise ValueError(f"encode_idx takes uint8/int8 arrays of 1-4 dimensions, got "
                         f"{array.dtype} with shape {array.shape}")
    head = bytes([0, 0, _CODES[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return head + np.ascontiguousarray(array).tobytes()
