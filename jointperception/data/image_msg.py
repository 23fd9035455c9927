"""sensor_msgs/Image <-> numpy (CompressedImage: ``compressed``).

Encodings: the colour and mono ones, 8UC1/8UC3, 32FC1, yuv422 (UYVY, YUYV) and Bayer (RGGB,
BGGR, GBRG, GRBG; 8 and 16 bit). The decoding and encoding work on the fields of an Image
message (encoding, height, width, step, is_bigendian, data) and import nothing from ROS, so they
are tested without rclpy.
``image_msg_to_rgb`` reads those fields from any message-like object and prefers cv_bridge
for the colour encodings when a ROS install provides it. Rows may be padded (``step`` larger
than ``width`` times the pixel size); multi-byte values honour ``is_bigendian``.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from jointperception.errors import InputError

try:
    from cv_bridge import CvBridge, CvBridgeError
except ImportError:  # cv_bridge comes with a ROS install, not with the pip wheels
    CvBridge = None

# Why a message could not be decoded; the node counts bad frames under these keys.
UNSUPPORTED_ENCODING = "unsupported_encoding"
ZERO_SIZE = "zero_size"
ODD_WIDTH = "odd_width"  # yuv422 packs two pixels in four bytes
WRONG_STEP = "wrong_step"
TRUNCATED_DATA = "truncated_data"
EXCESS_DATA = "excess_data"
NAN_VALUES = "nan_values"
UNSUPPORTED_FORMAT = "unsupported_format"  # a CompressedImage format that is no camera-image codec
CORRUPT_DATA = "corrupt_data"  # CompressedImage bytes that do not decode
OVERSIZED = "oversized"  # a CompressedImage whose header declares more pixels than any camera frame
CAUSES = (UNSUPPORTED_ENCODING, ZERO_SIZE, ODD_WIDTH, WRONG_STEP, TRUNCATED_DATA, EXCESS_DATA, NAN_VALUES,
          UNSUPPORTED_FORMAT, CORRUPT_DATA, OVERSIZED)

# encoding -> (numpy element type without byte order, channels)
ENCODINGS: dict[str, tuple[str, int]] = {
    "rgb8": ("u1", 3),
    "bgr8": ("u1", 3),
    "rgba8": ("u1", 4),
    "bgra8": ("u1", 4),
    "mono8": ("u1", 1),
    "8UC1": ("u1", 1),
    "8UC3": ("u1", 3),  # no colour order; read as RGB
    "mono16": ("u2", 1),
    "32FC1": ("f4", 1),  # intensity in [0, 1] when read as a camera image
    "32FC2": ("f4", 2),  # a two-channel field (e.g. flow), not a camera image
    "yuv422": ("u1", 2),  # UYVY (the sensor_msgs name)
    "uyvy": ("u1", 2),
    "yuv422_yuy2": ("u1", 2),  # YUYV
    "yuyv": ("u1", 2),
    # raw colour-filter-array frames (industrial cameras), demosaiced to RGB; name = 2x2 tile, row-major
    **{f"bayer_{tile}{bits}": ("u1" if bits == 8 else "u2", 1) for tile in ("rggb", "bggr", "gbrg", "grbg")
       for bits in (8, 16)},
}
_YUV_TO_RGB = {
    "yuv422": cv2.COLOR_YUV2RGB_UYVY,
    "uyvy": cv2.COLOR_YUV2RGB_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUYV,
    "yuyv": cv2.COLOR_YUV2RGB_YUYV,
}
_BAYER_TO_RGB = {
    "rggb": cv2.COLOR_BayerRGGB2RGB,
    "bggr": cv2.COLOR_BayerBGGR2RGB,
    "gbrg": cv2.COLOR_BayerGBRG2RGB,
    "grbg": cv2.COLOR_BayerGRBG2RGB,
}
_BRIDGE_ENCODINGS = frozenset({"rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16"})


class ImageConversionError(InputError):
    """An Image message that cannot be read; ``cause`` is one of ``CAUSES``."""

    def __init__(self, cause: str, message: str) -> None:
        super().__init__(message)
        self.cause = cause


@dataclass(frozen=True)
class EncodedImage:
    """The data fields of a sensor_msgs/Image (``Image(header=h, **vars(encoded))``)."""

    encoding: str
    height: int
    width: int
    step: int
    is_bigendian: int
    data: bytes


def _dtype(encoding: str, is_bigendian: bool) -> np.dtype:
    kind, _channels = ENCODINGS[encoding]
    return np.dtype(kind).newbyteorder(">" if is_bigendian else "<")


def decode_image(encoding: str, height: int, width: int, step: int, is_bigendian: bool, data: Any) -> np.ndarray:
    """Image fields -> fresh native-order array (H, W) for one channel, else (H, W, C).

    ``data`` is any buffer (bytes, array.array). dtype: uint8, uint16 (mono16) or float32
    (32FC1, 32FC2); yuv422 / yuyv stay packed as (H, W, 2) uint8. Raises ImageConversionError.
    """
    if encoding not in ENCODINGS:
        raise ImageConversionError(UNSUPPORTED_ENCODING, f"unsupported encoding {encoding!r}")
    if height <= 0 or width <= 0:
        raise ImageConversionError(ZERO_SIZE, f"{encoding} image has size {width}x{height}")
    if encoding in _YUV_TO_RGB and width % 2:
        raise ImageConversionError(ODD_WIDTH, f"{encoding} image has odd width {width}")
    dtype = _dtype(encoding, is_bigendian)
    channels = ENCODINGS[encoding][1]
    pixel_bytes = dtype.itemsize * channels
    if step < width * pixel_bytes:
        raise ImageConversionError(WRONG_STEP, f"{encoding} step {step} < width {width} x {pixel_bytes} bytes")
    size = len(memoryview(data).cast("B"))
    if size != step * height:
        cause = TRUNCATED_DATA if size < step * height else EXCESS_DATA
        raise ImageConversionError(cause, f"{encoding} data holds {size} bytes, step x height = {step * height}")
    view = np.ndarray(
        (height, width, channels), dtype=dtype, buffer=data, strides=(step, pixel_bytes, dtype.itemsize)
    )
    array = view.astype(dtype.newbyteorder("="), order="C")  # copies: never aliases the message
    return array[..., 0] if channels == 1 else array


def to_rgb(encoding: str, array: np.ndarray) -> np.ndarray:
    """A decoded image (see ``decode_image``) -> (H, W, 3) uint8 RGB.

    mono16 and 16-bit Bayer are scaled by 255/65535; 32FC1 is read as intensity in [0, 1]
    (clipped); Bayer frames are demosaiced (OpenCV bilinear). Raises ImageConversionError for
    NaN/inf values and for 32FC2, which is not a camera image.
    """
    if encoding == "32FC2":
        raise ImageConversionError(UNSUPPORTED_ENCODING, "32FC2 is a two-channel field, not a camera image")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ImageConversionError(NAN_VALUES, f"{encoding} image holds NaN or infinite values")
    if encoding in _YUV_TO_RGB:
        return cv2.cvtColor(array, _YUV_TO_RGB[encoding])
    if encoding.startswith("bayer_"):
        rgb = cv2.cvtColor(array, _BAYER_TO_RGB[encoding[6:10]])
        return rgb if rgb.dtype == np.uint8 else ((rgb.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if encoding in ("bgr8", "bgra8"):
        return np.ascontiguousarray(array[..., 2::-1])
    if encoding in ("rgb8", "rgba8", "8UC3"):
        return np.ascontiguousarray(array[..., :3])
    if encoding == "mono16":
        gray = ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif encoding == "32FC1":
        gray = np.round(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
    else:  # mono8, 8UC1
        gray = array
    return np.repeat(gray[..., None], 3, axis=2)


def image_to_rgb(encoding: str, height: int, width: int, step: int, is_bigendian: bool, data: Any) -> np.ndarray:
    """Image fields -> (H, W, 3) uint8 RGB with our own converter; raises ImageConversionError."""
    return to_rgb(encoding, decode_image(encoding, height, width, step, is_bigendian, data))


def image_msg_to_rgb(msg: Any) -> np.ndarray:
    """sensor_msgs/Image (or any object with its fields) -> (H, W, 3) uint8 RGB.

    The layout is always checked here first, so every bad message raises ImageConversionError
    with a cause; cv_bridge, when importable, then converts the encodings it knows.
    """
    fields = (msg.encoding, msg.height, msg.width, msg.step, bool(msg.is_bigendian), msg.data)
    array = decode_image(*fields)
    if CvBridge is None or msg.encoding not in _BRIDGE_ENCODINGS:
        return to_rgb(msg.encoding, array)
    try:
        return CvBridge().imgmsg_to_cv2(msg, desired_encoding="rgb8")
    except CvBridgeError as exc:
        raise ImageConversionError(UNSUPPORTED_ENCODING, f"cv_bridge: {exc}") from exc


def encode_image(array: np.ndarray, encoding: str) -> EncodedImage:
    """(H, W) or (H, W, C) array -> Image fields, rows unpadded, host byte order.

    The dtype and channel count must match ``encoding`` (e.g. mono8: (H, W) uint8, rgb8:
    (H, W, 3) uint8, 32FC2: (H, W, 2) float32); raises ImageConversionError otherwise.
    """
    if encoding not in ENCODINGS:
        raise ImageConversionError(UNSUPPORTED_ENCODING, f"unsupported encoding {encoding!r}")
    kind, channels = ENCODINGS[encoding]
    expected = (channels,) if channels > 1 else ()
    if array.ndim != 2 + len(expected) or array.shape[2:] != expected or array.dtype != np.dtype(kind):
        raise ImageConversionError(
            UNSUPPORTED_ENCODING, f"{encoding} needs {np.dtype(kind)} with {channels} channel(s), "
            f"got {array.dtype} {array.shape}"
        )
    height, width = array.shape[:2]
    if height == 0 or width == 0:
        raise ImageConversionError(ZERO_SIZE, f"{encoding} array has shape {array.shape}")
    return EncodedImage(
        encoding=encoding,
        height=height,
        width=width,
        step=width * channels * array.dtype.itemsize,
        is_bigendian=int(sys.byteorder == "big"),
        data=np.ascontiguousarray(array).tobytes(),
    )
