"""File formats: Middlebury .flo, KITTI 16-bit PNG flow, RGB images and binary masks.

Every reader raises DataFormatError naming the file for a missing, truncated or corrupt file;
every writer validates its array (InputError) and writes a temporary file, then renames it.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

import cv2
import numpy as np

from jointperception.data.image_header import check_declared_size
from jointperception.data.image_msg import ImageConversionError
from jointperception.errors import DataFormatError, InputError

FLO_MAGIC = b"PIEH"  # float32 202021.25, little-endian
FLO_HEADER = struct.Struct("<4sii")  # magic, width, height
KITTI_SCALE = 64.0  # stored value = flow * 64 + 2**15
KITTI_OFFSET = 2.0**15


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot read file ({exc.strerror or exc})") from exc


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot write file ({exc.strerror or exc})") from exc
    finally:
        tmp.unlink(missing_ok=True)


def _decode(path: Path, flags: int) -> np.ndarray:
    """Decode an image file after checking the size its header declares (``image_header``)."""
    data = _read_bytes(path)
    if not data:
        raise DataFormatError(f"{path}: empty file (0 bytes), not an image")
    try:
        check_declared_size(data)
    except ImageConversionError as exc:
        raise DataFormatError(f"{path}: {exc}") from exc
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as exc:  # e.g. a header beyond OpenCV's pixel limit
        reason = (exc.err or str(exc)).strip()
        raise DataFormatError(f"{path}: not a decodable image (OpenCV: {reason})") from None
    if image is None:
        raise DataFormatError(f"{path}: not a decodable image")
    return image


def _encode(path: Path, image: np.ndarray) -> bytes:
    if not cv2.haveImageWriter(path.name):
        raise DataFormatError(f"{path}: OpenCV has no image encoder for suffix {path.suffix!r}")
    ok, buffer = cv2.imencode(path.suffix, image)
    if not ok:
        raise DataFormatError(f"{path}: OpenCV cannot encode an image with suffix {path.suffix!r}")
    return buffer.tobytes()


def _check_flow(path: Path, flow: np.ndarray) -> None:
    if flow.ndim != 3 or flow.shape[2] != 2 or flow.shape[0] == 0 or flow.shape[1] == 0:
        raise InputError(f"{path}: flow must have shape (H, W, 2) with H, W > 0, got {flow.shape}")


def _require_png(path: Path) -> None:
    if path.suffix.lower() != ".png":
        raise InputError(f"{path}: this format must be written as a .png file")


def read_flo(path: str | Path) -> np.ndarray:
    """Read a Middlebury .flo file -> flow: (H, W, 2) float32, pixels (u, v).

    Values are returned as stored (unknown flow is > 1e9 by the Middlebury convention).
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < FLO_HEADER.size:
        raise DataFormatError(f"{path}: truncated .flo file ({len(data)} bytes, header needs 12)")
    magic, width, height = FLO_HEADER.unpack_from(data)
    if magic != FLO_MAGIC:
        raise DataFormatError(f"{path}: bad .flo magic {magic!r} (expected {FLO_MAGIC!r})")
    if width <= 0 or height <= 0:
        raise DataFormatError(f"{path}: bad .flo size {width}x{height}")
    expected = FLO_HEADER.size + width * height * 8
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "trailing bytes in"
        raise DataFormatError(
            f"{path}: {what} .flo file: header says {width}x{height} ({expected} bytes), "
            f"file has {len(data)} bytes"
        )
    flow = np.frombuffer(data, "<f4", offset=FLO_HEADER.size).reshape(height, width, 2)
    return flow.astype(np.float32)


def write_flo(path: str | Path, flow: np.ndarray) -> None:
    """Write flow: (H, W, 2) floating, pixels, to a Middlebury .flo file (float32 LE).

    NaN/inf are written as they are; use a value > 1e9 for unknown flow to follow Middlebury.
    """
    path = Path(path)
    flow = np.asarray(flow)
    _check_flow(path, flow)
    if not np.issubdtype(flow.dtype, np.floating):
        raise InputError(f"{path}: flow must be a floating array, got {flow.dtype}")
    height, width = flow.shape[:2]
    payload = np.ascontiguousarray(flow, dtype="<f4").tobytes()
    _write_atomic(path, FLO_HEADER.pack(FLO_MAGIC, width, height) + payload)


def read_kitti_flow(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a KITTI flow PNG -> (flow (H, W, 2) float32 pixels, valid (H, W) bool).

    File channels (R, G, B) = (u, v, valid), uint16, value = flow * 64 + 2**15.
    Flow is set to 0 where the pixel is not valid.
    """
    path = Path(path)
    image = _decode(path, cv2.IMREAD_UNCHANGED)
    if image.dtype != np.uint16 or image.ndim != 3 or image.shape[2] != 3:
        channels = image.shape[2] if image.ndim == 3 else 1
        raise DataFormatError(
            f"{path}: KITTI flow must be a 16-bit 3-channel PNG, got {image.dtype} with {channels} channel(s)"
        )
    valid = image[..., 0] > 0  # OpenCV order is BGR: B = valid, G = v, R = u
    flow = (image[..., [2, 1]].astype(np.float32) - KITTI_OFFSET) / KITTI_SCALE
    flow[~valid] = 0.0
    return flow, valid


def write_kitti_flow(path: str | Path, flow: np.ndarray, valid: np.ndarray | None = None) -> None:
    """Write flow: (H, W, 2) float pixels and valid: (H, W) bool (None = all) as a KITTI PNG.

    Valid flow must be finite and within +-511.99 px (the uint16 range); it is stored to 1/64 px.
    """
    path = Path(path)
    _require_png(path)
    flow = np.asarray(flow, dtype=np.float64)
    _check_flow(path, flow)
    valid = np.ones(flow.shape[:2], bool) if valid is None else np.asarray(valid, bool)
    if valid.shape != flow.shape[:2]:
        raise InputError(f"{path}: valid shape {valid.shape} does not match flow {flow.shape[:2]}")
    stored = np.where(valid[..., None], flow, 0.0) * KITTI_SCALE + KITTI_OFFSET
    if not np.all(np.isfinite(stored)) or stored.min() < 0 or stored.max() > 65535:
        raise InputError(f"{path}: valid flow must be finite and within +-511.99 px for KITTI PNG")
    image = np.empty(flow.shape[:2] + (3,), np.uint16)
    image[..., 0] = valid
    image[..., 1] = np.round(stored[..., 1])
    image[..., 2] = np.round(stored[..., 0])
    _write_atomic(path, _encode(path, image))


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file -> (H, W, 3) uint8 RGB (grey replicated, alpha dropped, 16-bit scaled)."""
    path = Path(path)
    return cv2.cvtColor(_decode(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def write_image(path: str | Path, rgb: np.ndarray) -> None:
    """Write rgb: (H, W, 3) uint8 RGB; the format follows the suffix (.png, .jpg, ...)."""
    path = Path(path)
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InputError(f"{path}: image must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    _write_atomic(path, _encode(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)))


def read_mask(path: str | Path) -> np.ndarray:
    """Read a mask PNG (8/16-bit grey, or palette/colour) -> (H, W) bool, nonzero = foreground.

    OpenCV expands palette PNGs to colour, so a pixel is foreground when its colour is not
    black (index 0 is black in the DAVIS palette); an alpha channel is ignored.
    """
    path = Path(path)
    image = _decode(path, cv2.IMREAD_UNCHANGED)
    if image.ndim == 2:
        return image != 0
    return np.any(image[..., :3] != 0, axis=2)


def write_mask(path: str | Path, mask: np.ndarray) -> None:
    """Write mask: (H, W) bool (or integer, nonzero = foreground) as an 8-bit 0/255 PNG."""
    path = Path(path)
    _require_png(path)
    mask = np.asarray(mask)
    if mask.ndim != 2 or not (mask.dtype == bool or np.issubdtype(mask.dtype, np.integer)):
        raise InputError(f"{path}: mask must be (H, W) bool or integer, got {mask.shape} {mask.dtype}")
    _write_atomic(path, _encode(path, np.where(mask != 0, 255, 0).astype(np.uint8)))


def write_label_image(path: str | Path, labels: np.ndarray) -> None:
    """Write labels: (H, W) uint8 ids (motion layers, 0 = background) as an 8-bit grey PNG."""
    path = Path(path)
    _require_png(path)
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise InputError(f"{path}: labels must be (H, W) uint8, got {labels.shape} {labels.dtype}")
    _write_atomic(path, _encode(path, np.ascontiguousarray(labels)))
