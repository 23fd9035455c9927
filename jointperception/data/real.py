"""Readers for the real evaluation sets (DAVIS-2016, MPI-Sintel pairs, FlyingChairs).

Each ``root`` is the data set's own folder (e.g. ``shared_data_root() / "sintel"``). Missing or
inconsistent files raise DataFormatError naming the path.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jointperception.data.formats import read_flo, read_image, read_mask
from jointperception.errors import DataFormatError

DAVIS_FRAME_SUFFIXES = (".jpg", ".png")  # DAVIS ships JPEG; the synthetic writer uses PNG


@dataclass(frozen=True)
class FlowPair:
    """Two frames with ground-truth flow image1 -> image2.

    image1, image2: (H, W, 3) uint8 RGB; flow: (H, W, 2) float32 pixels;
    occlusion: (H, W) bool, pixels of image1 not visible in image2, or None;
    valid: (H, W) bool, pixels whose flow is defined, or None (all valid).
    """

    name: str
    image1: np.ndarray
    image2: np.ndarray
    flow: np.ndarray
    occlusion: np.ndarray | None
    valid: np.ndarray | None


def _require_dir(path: Path) -> Path:
    if not path.is_dir():
        raise DataFormatError(f"{path}: data folder not found")
    return path


def _require_file(path: Path) -> Path:
    if not path.is_file():
        raise DataFormatError(f"{path}: file not found")
    return path


def _check_shape(path: Path, shape: tuple[int, ...], expected: tuple[int, ...]) -> None:
    if shape[:2] != expected[:2]:
        raise DataFormatError(
            f"{path}: size {shape[1]}x{shape[0]} does not match {expected[1]}x{expected[0]}"
        )


def davis_sequences(root: str | Path, resolution: str = "480p") -> list[str]:
    """Names of the sequences under ``root/JPEGImages/<resolution>``, sorted."""
    frames_dir = _require_dir(Path(root) / "JPEGImages" / resolution)
    return sorted(p.name for p in frames_dir.iterdir() if p.is_dir())


def load_davis_sequence(
    root: str | Path, name: str, resolution: str = "480p"
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Frames (H, W, 3) uint8 RGB and masks (H, W) bool of one sequence, one mask per frame."""
    root = Path(root)
    frames_dir = _require_dir(root / "JPEGImages" / resolution / name)
    masks_dir = _require_dir(root / "Annotations" / resolution / name)
    files = sorted(
        p for p in frames_dir.iterdir() if p.is_file() and p.suffix.lower() in DAVIS_FRAME_SUFFIXES
    )
    if not files:
        raise DataFormatError(f"{frames_dir}: no frames (.jpg or .png)")
    frames: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    for file in files:
        mask_file = _require_file(masks_dir / f"{file.stem}.png")
        frame, mask = read_image(file), read_mask(mask_file)
        _check_shape(file, frame.shape, frames[0].shape if frames else frame.shape)
        _check_shape(mask_file, mask.shape, frame.shape)
        frames.append(frame)
        masks.append(mask)
    return frames, masks


def _sintel_pair(folder: Path, name: str) -> FlowPair:
    image1 = read_image(_require_file(folder / "frame1.png"))
    image2 = read_image(_require_file(folder / "frame2.png"))
    flow = read_flo(_require_file(folder / "flow.flo"))
    _check_shape(folder / "frame2.png", image2.shape, image1.shape)
    _check_shape(folder / "flow.flo", flow.shape, image1.shape)
    occlusion = valid = None
    if (folder / "occlusions.png").is_file():
        occlusion = read_mask(folder / "occlusions.png")
        _check_shape(folder / "occlusions.png", occlusion.shape, image1.shape)
    if (folder / "invalid.png").is_file():
        valid = ~read_mask(folder / "invalid.png")
        _check_shape(folder / "invalid.png", valid.shape, image1.shape)
    return FlowPair(name, image1, image2, flow, occlusion, valid)


def sintel_pairs(root: str | Path, passes: tuple[str, ...] = ("clean", "final")) -> list[FlowPair]:
    """Sintel pairs from folders ``<pass>_<scene>_<NNNN>`` (frame1.png, frame2.png, flow.flo,
    optional occlusions.png / invalid.png with 255 = occluded / invalid).

    Names are ``"<pass>/<scene>_<NNNN>"`` (e.g. ``"clean/alley_1_0002"``, frame 2 -> 3),
    sorted by pass order, then scene.
    """
    root = _require_dir(Path(root))
    pairs: list[FlowPair] = []
    for pass_name in passes:
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(f"{pass_name}_")):
            pairs.append(_sintel_pair(folder, f"{pass_name}/{folder.name[len(pass_name) + 1:]}"))
    if not pairs:
        raise DataFormatError(f"{root}: no Sintel pair folders for passes {', '.join(passes)}")
    return pairs


def flyingchairs_pairs(root: str | Path) -> list[FlowPair]:
    """FlyingChairs pairs ``NNNNN-img0.ppm``, ``-img1.ppm``, ``-gt.flo``, named ``NNNNN``, sorted."""
    root = _require_dir(Path(root))
    pairs: list[FlowPair] = []
    for first in sorted(root.glob("*-img0.ppm")):
        stem = first.name[: -len("-img0.ppm")]
        image1 = read_image(first)
        image2 = read_image(_require_file(root / f"{stem}-img1.ppm"))
        flow = read_flo(_require_file(root / f"{stem}-gt.flo"))
        _check_shape(root / f"{stem}-img1.ppm", image2.shape, image1.shape)
        _check_shape(root / f"{stem}-gt.flo", flow.shape, image1.shape)
        pairs.append(FlowPair(stem, image1, image2, flow, None, None))
    if not pairs:
        raise DataFormatError(f"{root}: no FlyingChairs pairs (*-img0.ppm)")
    return pairs
