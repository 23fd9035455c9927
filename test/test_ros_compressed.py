"""CompressedImage fields <-> numpy (jointperception.data.compressed_image), without rclpy or DDS, and
CompressedImage topics in real rosbag2 bags."""
from __future__ import annotations

import struct
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from jointperception.data.bags import (
    COMPRESSED_IMAGE_TYPE,
    BagImageWriter,
    CompressedImageRecord,
    bag_topics,
    read_image_topics,
    record_encoding,
    record_rgb,
)
from jointperception.data.compressed_image import (
    compressed_msg_to_rgb,
    decode_compressed,
    encode_compressed,
    format_codec,
)
from jointperception.data.image_header import MAX_PIXELS, declared_size
from jointperception.data.image_msg import CORRUPT_DATA, OVERSIZED, UNSUPPORTED_FORMAT, ImageConversionError
from jointperception.data.synthetic import render_sequence
from jointperception.errors import InputError

T0 = 1_700_000_000_000_000_000


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    """A rendered (48, 64, 3) uint8 scene: smooth enough for JPEG to keep it close."""
    return render_sequence(5, 2, 48, 64).frames[0]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def test_png_round_trip_is_exact_and_jpeg_close(frame: np.ndarray) -> None:
    png = encode_compressed(frame, "png")
    assert png.format == "rgb8; png compressed bgr8" and png.data[:4] == b"\x89PNG"
    np.testing.assert_array_equal(decode_compressed(png.format, png.data), frame)
    jpeg = encode_compressed(frame, "jpeg", jpeg_quality=95)
    assert jpeg.format == "rgb8; jpeg compressed bgr8" and jpeg.data[:2] == b"\xff\xd8"
    decoded = decode_compressed(jpeg.format, jpeg.data)
    assert decoded.shape == frame.shape and decoded.dtype == np.uint8
    assert _psnr(decoded, frame) > 30.0
    low = decode_compressed(jpeg.format, encode_compressed(frame, "jpeg", jpeg_quality=5).data)
    assert _psnr(low, frame) < _psnr(decoded, frame)  # the quality setting is honoured


def test_colour_order_survives_what_other_encoders_write() -> None:
    """A red image written by plain OpenCV (BGR in the file), any format spelling -> red RGB."""
    red_bgr = np.zeros((8, 10, 3), np.uint8)
    red_bgr[..., 2] = 200
    data = cv2.imencode(".png", red_bgr)[1].tobytes()
    for image_format in ("png", "bgr8; png compressed bgr8", "rgb8; png compressed bgr8", "PNG", ""):
        rgb = decode_compressed(image_format, data)
        assert rgb.shape == (8, 10, 3) and (rgb[..., 0] == 200).all() and (rgb[..., 1:] == 0).all()


def test_mono_images_encode_losslessly_as_png() -> None:
    ids = (np.arange(8 * 10) % 5).astype(np.uint8).reshape(8, 10)  # layer ids: every value must survive
    encoded = encode_compressed(ids, "png")
    assert encoded.format == "mono8; png compressed mono8"
    np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(encoded.data, np.uint8), cv2.IMREAD_UNCHANGED), ids)
    np.testing.assert_array_equal(decode_compressed(encoded.format, encoded.data)[..., 1], ids)


def test_gray_16_bit_and_alpha_images_become_rgb() -> None:
    gray = np.arange(8 * 10, dtype=np.uint8).reshape(8, 10)
    rgb = decode_compressed("mono8; png compressed mono8", cv2.imencode(".png", gray)[1].tobytes())
    assert rgb.shape == (8, 10, 3) and all(np.array_equal(rgb[..., c], gray) for c in range(3))
    deep = np.full((8, 10), 65535, np.uint16)
    deep[0, 0] = 0
    rgb16 = decode_compressed("mono16; png compressed mono16", cv2.imencode(".png", deep)[1].tobytes())
    assert rgb16[0, 0, 0] == 0 and rgb16[1, 1, 0] == 255  # scaled by 255 / 65535 as the raw mono16 path
    bgra = np.zeros((8, 10, 4), np.uint8)
    bgra[..., 0], bgra[..., 3] = 255, 128  # blue, half transparent
    rgba = decode_compressed("bgra8; png compressed bgra8", cv2.imencode(".png", bgra)[1].tobytes())
    assert rgba.shape == (8, 10, 3) and (rgba[..., 2] == 255).all() and (rgba[..., :2] == 0).all()


@pytest.mark.parametrize("image_format, data, cause", [
    ("rgb8; jpeg compressed bgr8", b"", CORRUPT_DATA),
    ("rgb8; jpeg compressed bgr8", b"\xff\xd8\xff\xe0 cut short", CORRUPT_DATA),
    ("png", b"not an image at all" * 10, CORRUPT_DATA),
    ("16UC1; compressedDepth png", b"\x00" * 64, UNSUPPORTED_FORMAT),
    ("h264", b"\x00\x00\x00\x01" * 8, UNSUPPORTED_FORMAT),
])
def test_bad_messages_raise_with_a_cause(image_format: str, data: bytes, cause: str) -> None:
    with pytest.raises(ImageConversionError) as caught:
        decode_compressed(image_format, data)
    assert caught.value.cause == cause and isinstance(caught.value, InputError)
    with pytest.raises(ImageConversionError) as from_msg:
        compressed_msg_to_rgb(SimpleNamespace(format=image_format, data=data))
    assert from_msg.value.cause == cause


def test_headers_declaring_huge_images_are_refused_before_decoding(frame: np.ndarray) -> None:
    """A few bytes of PNG or JPEG header can declare gigapixels; such data never reaches the decoder."""
    height, width = frame.shape[:2]
    for codec in ("png", "jpeg"):
        assert declared_size(encode_compressed(frame, codec).data) == (width, height)
    assert declared_size(b"not an image") is None
    png = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + struct.pack(">II", 60000, 60000) + b"\x08\x02\x00\x00\x00" + bytes(4)
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + bytes(9)
    sof0 = b"\xff\xc0" + struct.pack(">HBHH", 17, 8, 65000, 65000) + bytes(12)
    jpeg = b"\xff\xd8" + app0 + sof0 + b"\xff\xd9"
    assert declared_size(png) == (60000, 60000) and declared_size(jpeg) == (65000, 65000)
    assert 60000 * 60000 > MAX_PIXELS
    for image_format, data in (("png", png), ("rgb8; jpeg compressed bgr8", jpeg)):
        for decode in (lambda f, d: decode_compressed(f, d), lambda f, d: compressed_msg_to_rgb(SimpleNamespace(format=f, data=d))):
            with pytest.raises(ImageConversionError) as caught:
                decode(image_format, data)
            assert caught.value.cause == OVERSIZED
            assert "x".join(map(str, declared_size(data))) in str(caught.value)


def test_truncated_jpeg_is_refused(frame: np.ndarray) -> None:
    jpeg = encode_compressed(frame, "jpeg")
    with pytest.raises(ImageConversionError) as caught:
        decode_compressed(jpeg.format, jpeg.data[: len(jpeg.data) // 8])
    assert caught.value.cause == CORRUPT_DATA


def test_format_names_and_encoder_arguments(frame: np.ndarray) -> None:
    assert format_codec("rgb8; jpeg compressed bgr8") == "jpeg"
    assert format_codec("bgr8; png compressed bgr8") == "png"
    assert format_codec("") is None
    for bad in (dict(codec="gif"), dict(jpeg_quality=0), dict(jpeg_quality=101)):
        with pytest.raises(ImageConversionError):
            encode_compressed(frame, **bad)
    with pytest.raises(ImageConversionError):
        encode_compressed(frame[..., :2], "png")
    with pytest.raises(ImageConversionError):
        encode_compressed(frame.astype(np.float32), "png")


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_compressed_topics_in_real_bags(tmp_path: Path, frame: np.ndarray, storage: str) -> None:
    bag = tmp_path / "bag"
    with BagImageWriter(bag, storage=storage) as writer:
        writer.write_compressed("/cam/image_raw/compressed", T0, frame, "png", frame_id="optical")
        writer.write_compressed("/cam/image_raw/compressed", T0 + 1, frame, "jpeg", jpeg_quality=90)
        writer.write("/cam/image_raw", T0, frame, "rgb8")
        with pytest.raises(InputError, match="holds sensor_msgs/msg/Image"):
            writer.write_compressed("/cam/image_raw", T0 + 2, frame, "png")  # one type per topic
    topics = bag_topics(bag)
    assert topics["/cam/image_raw/compressed"] == (COMPRESSED_IMAGE_TYPE, 2)
    records = list(read_image_topics(bag, ["/cam/image_raw/compressed", "/cam/image_raw"]))
    assert [topic for topic, _log, _record in records] == [
        "/cam/image_raw/compressed", "/cam/image_raw", "/cam/image_raw/compressed"]
    png_record, jpeg_record = records[0][2], records[2][2]
    assert isinstance(png_record, CompressedImageRecord) and png_record.frame_id == "optical"
    assert record_encoding(png_record) == "rgb8; png compressed bgr8"
    np.testing.assert_array_equal(record_rgb(png_record), frame)
    np.testing.assert_array_equal(record_rgb(records[1][2]), frame)
    assert _psnr(record_rgb(jpeg_record), frame) > 30.0


def test_compressed_bytes_equal_rclpy_serialize_message(tmp_path: Path, frame: np.ndarray) -> None:
    """What we write parses in rclpy to the same message, and rclpy's bytes parse in rosbags."""
    pytest.importorskip("rclpy", reason="ROS 2 wheels (rclpy) not installed")
    from rclpy.serialization import deserialize_message, serialize_message
    from rosbags.rosbag2 import Reader
    from sensor_msgs.msg import CompressedImage

    from jointperception.data.bags import typestore

    encoded = encode_compressed(frame, "jpeg")
    bag = tmp_path / "bag"
    with BagImageWriter(bag) as writer:
        writer.write_fields("/c", T0, encoded, frame_id="cam")
    with Reader(bag) as reader:
        ((_connection, _log_time, raw),) = list(reader.messages())
    back = deserialize_message(bytes(raw), CompressedImage)
    assert (back.format, back.header.frame_id, bytes(back.data)) == (encoded.format, "cam", encoded.data)
    assert back.header.stamp.sec * 1_000_000_000 + back.header.stamp.nanosec == T0
    np.testing.assert_array_equal(compressed_msg_to_rgb(back), decode_compressed(encoded.format, encoded.data))
    reference = serialize_message(CompressedImage(header=back.header, format=encoded.format, data=encoded.data))
    parsed = typestore().deserialize_cdr(bytes(reference), COMPRESSED_IMAGE_TYPE)
    assert parsed.format == encoded.format and parsed.data.tobytes() == encoded.data
