"""Image message fields <-> numpy (jointperception.data.image_msg), without rclpy or DDS."""
from __future__ import annotations

import array
from types import SimpleNamespace

import numpy as np
import pytest

from jointperception.data.image_msg import (
    ENCODINGS,
    ImageConversionError,
    decode_image,
    encode_image,
    image_msg_to_rgb,
    image_to_rgb,
    to_rgb,
)
from jointperception.errors import InputError

HEIGHT, WIDTH = 4, 6


def _sample(encoding: str, seed: int = 0) -> np.ndarray:
    """A random array of the shape and dtype that ``encoding`` decodes to."""
    kind, channels = ENCODINGS[encoding]
    shape = (HEIGHT, WIDTH) if channels == 1 else (HEIGHT, WIDTH, channels)
    rng = np.random.default_rng(seed)
    if kind == "f4":
        return rng.uniform(-50.0, 50.0, shape).astype(np.float32)
    return rng.integers(0, np.iinfo(np.dtype(kind)).max + 1, shape).astype(np.dtype(kind))


def _padded(array: np.ndarray, pad: int, byteorder: str = "<") -> tuple[int, bytes]:
    """Rows of ``array`` in ``byteorder`` followed by ``pad`` garbage bytes -> (step, data)."""
    rows = array.astype(array.dtype.newbyteorder(byteorder)).reshape(array.shape[0], -1).view(np.uint8)
    garbage = np.full((array.shape[0], pad), 0xAB, dtype=np.uint8)
    data = np.concatenate([rows, garbage], axis=1)
    return data.shape[1], data.tobytes()


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_every_encoding_round_trips(encoding: str) -> None:
    original = _sample(encoding)
    encoded = encode_image(original, encoding)
    assert (encoded.height, encoded.width, encoded.encoding) == (HEIGHT, WIDTH, encoding)
    assert len(encoded.data) == encoded.step * encoded.height
    decoded = decode_image(encoding, HEIGHT, WIDTH, encoded.step, bool(encoded.is_bigendian), encoded.data)
    assert decoded.dtype == original.dtype and decoded.shape == original.shape
    np.testing.assert_array_equal(decoded, original)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_step_padding_is_skipped(encoding: str) -> None:
    original = _sample(encoding, seed=1)
    step, data = _padded(original, pad=5)  # 5: rows of 2- and 4-byte values start unaligned
    np.testing.assert_array_equal(decode_image(encoding, HEIGHT, WIDTH, step, False, data), original)


@pytest.mark.parametrize("encoding", ["mono16", "32FC1", "32FC2"])
def test_big_endian_data_is_read_in_its_byte_order(encoding: str) -> None:
    original = _sample(encoding, seed=2)
    step, data = _padded(original, pad=2, byteorder=">")
    decoded = decode_image(encoding, HEIGHT, WIDTH, step, True, data)
    assert decoded.dtype.isnative
    np.testing.assert_array_equal(decoded, original)
    little = decode_image(encoding, HEIGHT, WIDTH, step, False, data)
    assert not np.array_equal(little, original, equal_nan=True)


def test_decoded_array_never_aliases_the_message_buffer() -> None:
    data = bytearray(np.arange(HEIGHT * WIDTH, dtype=np.uint8).tobytes())
    decoded = decode_image("mono8", HEIGHT, WIDTH, WIDTH, False, data)
    data[0] = 200
    assert decoded[0, 0] == 0


def test_colour_orders_and_alpha_become_rgb() -> None:
    rgba = _sample("rgba8", seed=3)
    np.testing.assert_array_equal(to_rgb("rgba8", rgba), rgba[..., :3])
    bgra = rgba[..., [2, 1, 0, 3]]
    np.testing.assert_array_equal(to_rgb("bgra8", bgra), rgba[..., :3])
    np.testing.assert_array_equal(to_rgb("bgr8", rgba[..., 2::-1]), rgba[..., :3])
    np.testing.assert_array_equal(to_rgb("8UC3", rgba[..., :3]), rgba[..., :3])


def test_grey_encodings_scale_to_uint8() -> None:
    mono8 = np.array([[0, 7, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(to_rgb("8UC1", mono8), np.repeat(mono8[..., None], 3, axis=2))
    mono16 = np.array([[0, 128, 129, 257, 65535]], dtype=np.uint16)
    np.testing.assert_array_equal(to_rgb("mono16", mono16)[..., 0], [[0, 0, 1, 1, 255]])
    depth = np.array([[-1.0, 0.0, 0.5, 1.0, 3.0]], dtype=np.float32)
    np.testing.assert_array_equal(to_rgb("32FC1", depth)[..., 1], [[0, 0, 128, 255, 255]])


# BT.601 video range: pure red is Y=81, U(Cb)=90, V(Cr)=240; grey Y=126 -> (126-16)*255/219 = 128.
@pytest.mark.parametrize(
    ("encoding", "pair"),
    [("yuv422", [90, 81, 240, 126]), ("uyvy", [90, 81, 240, 126]),
     ("yuyv", [81, 90, 126, 240]), ("yuv422_yuy2", [81, 90, 126, 240])],
)
def test_yuv422_byte_orders(encoding: str, pair: list[int]) -> None:
    data = bytes(pair * HEIGHT * (WIDTH // 2))
    rgb = image_to_rgb(encoding, HEIGHT, WIDTH, WIDTH * 2, False, data)
    assert rgb.shape == (HEIGHT, WIDTH, 3) and rgb.dtype == np.uint8
    assert np.abs(rgb[:, 0::2].astype(int) - [255, 0, 0]).max() <= 3  # Y=81 with red chroma
    other = {"yuv422": "yuyv", "uyvy": "yuyv", "yuyv": "uyvy", "yuv422_yuy2": "uyvy"}[encoding]
    swapped = image_to_rgb(other, HEIGHT, WIDTH, WIDTH * 2, False, data)
    assert np.abs(swapped[:, 0::2].astype(int) - [255, 0, 0]).max() > 50


def test_message_like_objects_with_array_data() -> None:
    rgb = _sample("rgb8", seed=4)
    step, data = _padded(rgb[..., ::-1], pad=3)
    msg = SimpleNamespace(encoding="bgr8", height=HEIGHT, width=WIDTH, step=step, is_bigendian=0,
                          data=array.array("B", data))
    np.testing.assert_array_equal(image_msg_to_rgb(msg), rgb)


def _cause(encoding: str, height: int, width: int, step: int, data: bytes) -> str:
    with pytest.raises(ImageConversionError) as info:
        image_to_rgb(encoding, height, width, step, False, data)
    assert isinstance(info.value, InputError)
    assert str(info.value)  # the message says what is wrong
    return info.value.cause


@pytest.mark.parametrize("encoding", ["bayer_rggb32", "16UC3", "64FC1", "jpeg", "", "RGB8", "32FC2"])
def test_unsupported_encodings(encoding: str) -> None:
    assert _cause(encoding, HEIGHT, WIDTH, WIDTH * 8, bytes(HEIGHT * WIDTH * 8)) == "unsupported_encoding"


def test_each_inconsistent_layout_has_its_cause() -> None:
    rgb = bytes(HEIGHT * WIDTH * 3)
    assert _cause("rgb8", HEIGHT, WIDTH, WIDTH * 3 - 1, rgb[: HEIGHT * (WIDTH * 3 - 1)]) == "wrong_step"
    assert _cause("rgb8", 0, WIDTH, WIDTH * 3, b"") == "zero_size"
    assert _cause("rgb8", HEIGHT, 0, 0, b"") == "zero_size"
    assert _cause("rgb8", HEIGHT, WIDTH, WIDTH * 3, rgb[:-1]) == "truncated_data"
    assert _cause("rgb8", HEIGHT, WIDTH, WIDTH * 3, rgb + b"\x00") == "excess_data"
    assert _cause("yuv422", HEIGHT, WIDTH - 1, (WIDTH - 1) * 2, bytes(HEIGHT * (WIDTH - 1) * 2)) == "odd_width"


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_float_images_are_rejected(bad: float) -> None:
    depth = np.full((HEIGHT, WIDTH), 0.5, dtype=np.float32)
    depth[1, 2] = bad
    assert _cause("32FC1", HEIGHT, WIDTH, WIDTH * 4, depth.tobytes()) == "nan_values"


def test_encode_rejects_arrays_that_do_not_match_the_encoding() -> None:
    with pytest.raises(ImageConversionError):
        encode_image(np.zeros((HEIGHT, WIDTH), dtype=np.float32), "mono8")
    with pytest.raises(ImageConversionError):
        encode_image(np.zeros((HEIGHT, WIDTH, 3), dtype=np.float32), "32FC2")
    with pytest.raises(ImageConversionError):
        encode_image(np.zeros((0, WIDTH, 3), dtype=np.uint8), "rgb8")


@pytest.mark.parametrize("tile", ["rggb", "bggr", "gbrg", "grbg"])
@pytest.mark.parametrize("bits", [8, 16])
def test_bayer_frames_are_demosaiced_by_their_tile(tile: str, bits: int) -> None:
    """A flat colour seen through the named 2x2 filter tile comes back as that colour (inside the
    frame; demosaicing guesses at the border), whatever the byte order of 16-bit data."""
    colour = np.array([200, 100, 30])
    scale = 257 if bits == 16 else 1
    mosaic = np.zeros((8, 10), dtype=np.uint16 if bits == 16 else np.uint8)
    for index, channel in enumerate(tile):
        dy, dx = divmod(index, 2)
        mosaic[dy::2, dx::2] = colour["rgb".index(channel)] * scale
    encoding = f"bayer_{tile}{bits}"
    for byteorder in ("<", ">"):
        step, data = _padded(mosaic, 4, byteorder)
        rgb = image_to_rgb(encoding, 8, 10, step, byteorder == ">", data)
        assert rgb.shape == (8, 10, 3) and rgb.dtype == np.uint8
        np.testing.assert_array_equal(rgb[2:-2, 2:-2], np.broadcast_to(colour, (4, 6, 3)))
    assert encode_image(mosaic, encoding).encoding == encoding  # bags and tests can carry Bayer frames
