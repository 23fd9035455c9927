"""sensor_msgs/CompressedImage <-> numpy (the ``compressed`` transport of image_transport).

Like ``image_msg`` this works on the message's fields (``format``, ``data``) and imports nothing
from ROS, so bags, ``predict`` and ``replay`` share it with the node. ``format`` follows
compressed_image_transport: ``"<encoding>; <codec> compressed <stored encoding>"`` (e.g.
``"rgb8; jpeg compressed bgr8"``), or just the codec (``"jpeg"``, ``"png"``); an empty format is
read by the data's own signature. Depth images (``compressedDepth``) and video codecs are not
camera frames and are refused. Data whose header declares more than ``max_pixels`` (default
MAX_PIXELS), or of no format OpenCV decodes, is refused before decoding (``image_header``).
``compressed_msg_to_rgb`` prefers cv_bridge when a ROS install provides it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from jointperception.data.image_header import MAX_PIXELS, check_declared_size
from jointperception.data.image_msg import (
    CORRUPT_DATA,
    UNSUPPORTED_FORMAT,
    ImageConversionError,
)

try:
    from cv_bridge import CvBridge, CvBridgeError
except ImportError:  # cv_bridge comes with a ROS install, not with the pip wheels
    CvBridge = None

# codec names a format may give -> the file suffix OpenCV encodes it by
CODECS = {"jpeg": ".jpg", "jpg": ".jpg", "png": ".png", "tiff": ".tiff", "tif": ".tiff", "webp": ".webp", "bmp": ".bmp"}
_WORDS = re.compile(r"[a-z0-9_]+")


@dataclass(frozen=True)
class EncodedCompressedImage:
    """The data fields of a sensor_msgs/CompressedImage (``CompressedImage(header=h, **vars(encoded))``)."""

    format: str
    data: bytes


def format_codec(image_format: str) -> str | None:
    """The codec a CompressedImage ``format`` names (a key of CODECS), None for an empty format;
    raises ImageConversionError(UNSUPPORTED_FORMAT) for depth formats and unknown codecs."""
    words = _WORDS.findall(image_format.lower())
    if "compresseddepth" in words:
        raise ImageConversionError(UNSUPPORTED_FORMAT, f"format {image_format!r} is a compressed depth image, "
                                                       "not a camera frame")
    codecs = [word for word in words if word in CODECS]
    if codecs:
        return codecs[0]
    if image_format.strip():
        raise ImageConversionError(UNSUPPORTED_FORMAT, f"unsupported compressed format {image_format!r}; "
                                                       f"expected one of {', '.join(CODECS)}")
    return None


def _rgb_from_decoded(image: np.ndarray, image_format: str) -> np.ndarray:
    """cv2.imdecode's (H, W) or (H, W, 3|4) BGR(A), uint8 or uint16 -> (H, W, 3) uint8 RGB
    (16-bit values scaled by 255 / 65535 as ``convert.to_rgb`` does for mono16)."""
    if image.dtype == np.uint16:
        image = ((image.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageConversionError(UNSUPPORTED_FORMAT, f"format {image_format!r} decodes to {image.dtype} pixels; "
                                                       "camera frames are 8 or 16 bit")
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def decode_compressed(image_format: str, data: Any, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """CompressedImage fields -> (H, W, 3) uint8 RGB with OpenCV; ``data`` is any buffer.

    Raises ImageConversionError: UNSUPPORTED_FORMAT for a format that is no image codec (see
    ``format_codec``), CORRUPT_DATA for empty or undecodable bytes, OVERSIZED for a header that
    declares more than ``max_pixels``.
    """
    format_codec(image_format)
    buffer = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    if buffer.size == 0:
        raise ImageConversionError(CORRUPT_DATA, f"compressed image ({image_format!r}) holds no data")
    _check_declared_size(buffer.tobytes(), image_format, max_pixels)
    image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise ImageConversionError(CORRUPT_DATA, f"{buffer.size} bytes of {image_format!r} do not decode to an image")
    return _rgb_from_decoded(image, image_format)


def _check_declared_size(data: bytes, image_format: str, max_pixels: int) -> None:
    try:
        check_declared_size(data, max_pixels)
    except ImageConversionError as exc:
        raise ImageConversionError(exc.cause, f"compressed image ({image_format!r}): {exc}") from exc


def compressed_msg_to_rgb(msg: Any, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """sensor_msgs/CompressedImage (or any object with ``format`` and ``data``) -> (H, W, 3)
    uint8 RGB. The format and the declared size (``max_pixels``) are checked here first, so every bad message raises
    ImageConversionError with a cause; cv_bridge, when importable, then decodes."""
    if CvBridge is None:
        return decode_compressed(msg.format, msg.data, max_pixels)
    format_codec(msg.format)
    if len(msg.data) == 0:
        raise ImageConversionError(CORRUPT_DATA, f"compressed image ({msg.format!r}) holds no data")
    _check_declared_size(bytes(msg.data), msg.format, max_pixels)
    try:
        return CvBridge().compressed_imgmsg_to_cv2(msg, desired_encoding="rgb8")
    except (CvBridgeError, cv2.error) as exc:
        raise ImageConversionError(CORRUPT_DATA, f"cv_bridge: {exc}") from exc


def encode_compressed(image: np.ndarray, codec: str = "jpeg", jpeg_quality: int = 90) -> EncodedCompressedImage:
    """(H, W, 3) uint8 RGB or (H, W) uint8 mono -> CompressedImage fields, as
    compressed_image_transport writes them (format ``"rgb8; <codec> compressed bgr8"`` or
    ``"mono8; <codec> compressed mono8"``). ``codec``: jpeg (lossy, ``jpeg_quality`` 1..100) or
    png (lossless: masks and layer ids survive). Raises ImageConversionError for another array
    or codec."""
    if codec not in ("jpeg", "png"):
        raise ImageConversionError(UNSUPPORTED_FORMAT, f"codec must be jpeg or png, got {codec!r}")
    colour = image.ndim == 3 and image.shape[2] == 3
    if not (colour or image.ndim == 2) or image.dtype != np.uint8 or 0 in image.shape:
        raise ImageConversionError(UNSUPPORTED_FORMAT, "needs a non-empty (H, W, 3) or (H, W) uint8 array, got "
                                                       f"{image.dtype} {image.shape}")
    if not 1 <= jpeg_quality <= 100:
        raise ImageConversionError(UNSUPPORTED_FORMAT, f"jpeg_quality must be in 1..100, got {jpeg_quality}")
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if codec == "jpeg" else []
    ok, encoded = cv2.imencode(CODECS[codec], cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if colour else image, params)
    if not ok:
        raise ImageConversionError(UNSUPPORTED_FORMAT, f"OpenCV could not encode a {image.shape} image as {codec}")
    image_format = f"rgb8; {codec} compressed bgr8" if colour else f"mono8; {codec} compressed mono8"
    return EncodedCompressedImage(format=image_format, data=encoded.tobytes())
