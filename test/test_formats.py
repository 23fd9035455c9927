"""Round trips and corrupt-file errors for .flo, KITTI flow PNG, images and masks."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from jointperception.data.formats import (
    read_flo,
    read_image,
    read_kitti_flow,
    read_mask,
    write_flo,
    write_image,
    write_kitti_flow,
    write_mask,
)
from jointperception.errors import DataFormatError, InputError

H, W = 64, 96


def random_flow(seed: int = 0, scale: float = 20.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((H, W, 2)) * scale).astype(np.float32)


# --- .flo -----------------------------------------------------------------------------------


def test_flo_round_trip_is_exact_and_layout_is_middlebury(tmp_path: Path) -> None:
    flow = random_flow()
    flow[3, 5] = [np.nan, 1e10]  # unknown flow is written as it is
    path = tmp_path / "a.flo"
    write_flo(path, flow)
    back = read_flo(path)
    assert back.dtype == np.float32 and back.shape == (H, W, 2)
    np.testing.assert_array_equal(back, flow)  # NaN compares equal in assert_array_equal
    data = path.read_bytes()
    assert data[:4] == b"PIEH" and struct.unpack("<f", data[:4])[0] == 202021.25
    assert struct.unpack("<ii", data[4:12]) == (W, H)
    u, v = struct.unpack("<ff", data[12:20])  # pixel (0, 0): u then v
    assert (u, v) == (flow[0, 0, 0], flow[0, 0, 1])
    assert not [p for p in tmp_path.iterdir() if p.name != "a.flo"]  # no temporary file left


def test_write_flo_converts_float64_and_rejects_bad_arrays(tmp_path: Path) -> None:
    flow64 = random_flow().astype(np.float64)
    write_flo(tmp_path / "d.flo", flow64)
    np.testing.assert_array_equal(read_flo(tmp_path / "d.flo"), flow64.astype(np.float32))
    for bad in (np.zeros((H, W, 3), np.float32), np.zeros((H, W), np.float32), np.zeros((H, W, 2), np.int32)):
        with pytest.raises(InputError, match="x.flo"):
            write_flo(tmp_path / "x.flo", bad)
    assert not (tmp_path / "x.flo").exists()


def flo_bytes(width: int, height: int, values: int, magic: bytes = b"PIEH") -> bytes:
    return magic + struct.pack("<ii", width, height) + np.zeros(values, "<f4").tobytes()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (flo_bytes(4, 3, 24, magic=b"ABCD"), "magic"),
        (b"PIEH\x04\x00", "truncated"),
        (flo_bytes(100, 100, 50), "truncated"),
        (flo_bytes(4, 3, 30), "trailing"),
        (flo_bytes(-4, 3, 24), "size"),
        (flo_bytes(0, 3, 0), "size"),
        (flo_bytes(2**31 - 1, 2**31 - 1, 8), "truncated"),
    ],
)
def test_read_flo_rejects_corrupt_files(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "bad.flo"
    path.write_bytes(data)
    with pytest.raises(DataFormatError, match=message) as info:
        read_flo(path)
    assert str(path) in str(info.value)


def test_read_flo_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="missing.flo"):
        read_flo(tmp_path / "missing.flo")


# --- KITTI ----------------------------------------------------------------------------------


def test_kitti_round_trip_within_one_64th_pixel(tmp_path: Path) -> None:
    flow = random_flow(1, scale=100.0)
    valid = np.random.default_rng(2).random((H, W)) > 0.3
    flow[~valid] = np.nan  # invalid pixels may hold anything
    path = tmp_path / "k.png"
    write_kitti_flow(path, flow, valid)
    back, back_valid = read_kitti_flow(path)
    np.testing.assert_array_equal(back_valid, valid)
    assert np.abs(back[valid] - flow[valid]).max() <= 1 / 128 + 1e-6
    assert np.all(back[~valid] == 0)
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # file order is BGR: B valid, G v, R u
    y, x = np.argwhere(valid)[0]
    assert raw.dtype == np.uint16 and raw[y, x, 0] == 1
    assert raw[y, x, 2] == round(flow[y, x, 0] * 64 + 2**15)
    assert raw[y, x, 1] == round(flow[y, x, 1] * 64 + 2**15)


def test_write_kitti_rejects_unrepresentable_flow(tmp_path: Path) -> None:
    flow = np.zeros((H, W, 2), np.float32)
    flow[0, 0, 0] = 600.0
    with pytest.raises(InputError, match="512|511"):
        write_kitti_flow(tmp_path / "k.png", flow)
    flow[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="finite"):
        write_kitti_flow(tmp_path / "k.png", flow)
    with pytest.raises(InputError, match="png"):
        write_kitti_flow(tmp_path / "k.jpg", np.zeros((H, W, 2), np.float32))


@pytest.mark.parametrize(
    "image",
    [np.zeros((H, W, 3), np.uint8), np.zeros((H, W), np.uint16), np.zeros((H, W, 4), np.uint16)],
    ids=["8bit", "one-channel", "four-channel"],
)
def test_read_kitti_rejects_wrong_png_kind(tmp_path: Path, image: np.ndarray) -> None:
    path = tmp_path / "k.png"
    cv2.imwrite(str(path), image)
    with pytest.raises(DataFormatError, match="16-bit 3-channel") as info:
        read_kitti_flow(path)
    assert str(path) in str(info.value)


def test_read_kitti_rejects_truncated_and_missing(tmp_path: Path) -> None:
    path = tmp_path / "k.png"
    write_kitti_flow(path, random_flow())
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataFormatError, match="k.png"):
        read_kitti_flow(path)
    with pytest.raises(DataFormatError, match="none.png"):
        read_kitti_flow(tmp_path / "none.png")


# --- images and masks -----------------------------------------------------------------------


def test_image_round_trip_keeps_rgb_order(tmp_path: Path) -> None:
    rgb = np.random.default_rng(3).integers(0, 256, (H, W, 3), dtype=np.uint8)
    rgb[0, 0] = [255, 0, 0]  # pure red must stay in channel 0
    write_image(tmp_path / "i.png", rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "i.png"), rgb)
    assert cv2.imread(str(tmp_path / "i.png"))[0, 0].tolist() == [0, 0, 255]  # BGR on disk
    smooth = np.zeros((H, W, 3), np.uint8)
    smooth[..., 0] = 200
    write_image(tmp_path / "i.jpg", smooth)
    assert np.abs(read_image(tmp_path / "i.jpg").astype(int) - smooth).max() <= 3


def test_image_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        write_image(tmp_path / "f.png", np.zeros((H, W, 3), np.float32))
    with pytest.raises(DataFormatError, match="suffix"):
        write_image(tmp_path / "f.unknownext", np.zeros((H, W, 3), np.uint8))
    (tmp_path / "junk.png").write_bytes(b"this is not a png")
    with pytest.raises(DataFormatError, match="junk.png"):
        read_image(tmp_path / "junk.png")
    with pytest.raises(DataFormatError, match="absent.jpg"):
        read_image(tmp_path / "absent.jpg")


def test_mask_round_trip_writes_0_255(tmp_path: Path) -> None:
    mask = np.random.default_rng(4).random((H, W)) > 0.5
    write_mask(tmp_path / "m.png", mask)
    raw = cv2.imread(str(tmp_path / "m.png"), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint8 and raw.ndim == 2 and set(np.unique(raw)) == {0, 255}
    back = read_mask(tmp_path / "m.png")
    assert back.dtype == bool
    np.testing.assert_array_equal(back, mask)
    with pytest.raises(InputError):
        write_mask(tmp_path / "m.png", np.zeros((H, W, 3), bool))
    with pytest.raises(InputError, match="png"):
        write_mask(tmp_path / "m.jpg", mask)


def palette_png(indices: np.ndarray, palette: list[tuple[int, int, int]]) -> bytes:
    """A minimal 8-bit palette PNG (colour type 3) written by hand."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    height, width = indices.shape
    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    rows = b"".join(b"\x00" + row.astype(np.uint8).tobytes() for row in indices)
    plte = b"".join(bytes(c) for c in palette)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"PLTE", plte) + \
        chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_read_mask_palette_and_grey_levels(tmp_path: Path) -> None:
    indices = np.zeros((H, W), np.uint8)
    indices[10:20, 5:30] = 1
    indices[40:50, 60:70] = 2
    (tmp_path / "p.png").write_bytes(palette_png(indices, [(0, 0, 0), (128, 0, 0), (0, 128, 0)]))
    np.testing.assert_array_equal(read_mask(tmp_path / "p.png"), indices > 0)
    grey = (indices * 7).astype(np.uint8)  # any nonzero level is foreground
    cv2.imwrite(str(tmp_path / "g.png"), grey)
    np.testing.assert_array_equal(read_mask(tmp_path / "g.png"), indices > 0)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataFormatError, match="bad.png"):
        read_mask(tmp_path / "bad.png")
    with pytest.raises(DataFormatError, match="gone.png"):
        read_mask(tmp_path / "gone.png")


def test_writing_into_a_missing_folder_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="cannot write") as info:
        write_flo(tmp_path / "no_such_dir" / "a.flo", random_flow())
    assert "no_such_dir" in str(info.value)
