"""Frame sources: a folder of images (sorted by file name), a video file, or a camera topic of a
rosbag2 bag (sensor_msgs/Image or CompressedImage, in log-time order).

Iterating a source yields ``(stem, frame)`` with frame: (H, W, 3) uint8 RGB. Every iteration
starts again from the first frame.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from jointperception.data.bags import camera_topic, is_bag, read_image_messages, record_rgb, stop_at_shortfall
from jointperception.data.formats import read_image
from jointperception.data.image_msg import ImageConversionError
from jointperception.errors import DataFormatError, InputError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"})


def _one_size(frames: Iterable[tuple[str, np.ndarray, str]]) -> Iterator[tuple[str, np.ndarray]]:
    """(stem, frame, where it came from) -> (stem, frame); InputError naming both places for a
    frame whose size differs from the first frame's (one size per run)."""
    first: tuple[tuple[int, ...], str] | None = None
    for stem, frame, where in frames:
        if first is None:
            first = (frame.shape, where)
        elif frame.shape != first[0]:
            raise InputError(f"{where}: frame size {frame.shape[1]}x{frame.shape[0]} differs from the first "
                             f"frame's {first[0][1]}x{first[0][0]} ({first[1]})")
        yield stem, frame


class FolderFrames:
    """The image files of a folder, sorted by name; other files are ignored.

    Raises InputError (at construction) for a folder without images or with two images of the
    same stem, and (while iterating) for a frame whose size differs from the first frame's;
    DataFormatError for an image that cannot be decoded.
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder
        self.files = sorted(
            (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
            key=lambda p: p.name,
        )
        if not self.files:
            raise InputError(f"{folder}: folder holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
        stems: dict[str, Path] = {}
        for file in self.files:
            if file.stem in stems:
                raise InputError(f"{file}: same stem as {stems[file.stem].name}; outputs would collide")
            stems[file.stem] = file

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        yield from _one_size((file.stem, read_image(file), str(file)) for file in self.files)


class VideoFrames:
    """The frames of a video file read with OpenCV; stems are zero-padded indices "00000".

    The frame count is not known reliably in advance, so this source has no ``__len__``;
    ``estimated_frames`` holds the container's claim (None when it makes none), and after an
    iteration ``shortfall`` says when fewer frames decoded than it claims (None otherwise).
    Raises DataFormatError when the file cannot be opened or yields no frame.
    """

    def __init__(self, video: Path) -> None:
        self.path = video
        capture = self._open()
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        capture.release()
        self.estimated_frames: int | None = count if count > 0 else None
        self.shortfall: str | None = None

    def _open(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            capture.release()
            raise DataFormatError(f"{self.path}: cannot open as a video file")
        return capture

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        capture = self._open()
        try:
            index = 0
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                yield f"{index:05d}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                index += 1
        finally:
            capture.release()
        if index == 0:
            raise DataFormatError(f"{self.path}: video yields no frames")
        if self.estimated_frames is not None and index < self.estimated_frames:
            self.shortfall = f"{self.path}: the container declares {self.estimated_frames} frames, {index} decoded"


class BagFrames:
    """The frames of one camera topic of a rosbag2 bag (mcap or sqlite3), Image or CompressedImage,
    in log-time order; stems are "<index>_<header stamp ns>" (e.g. "00003_1700000000100000000"),
    so outputs sort by arrival and name the message they belong to.

    ``topic`` None: the bag's only camera topic. Raises InputError (at construction) for an
    ambiguous topic, and (while iterating) for a frame whose size differs from the first's;
    DataFormatError naming the bag, topic and stamp for a corrupt bag or a frame that cannot be
    decoded (with its cause). After an iteration ``shortfall`` says when the storage held fewer
    messages than the metadata lists (None otherwise).
    """

    def __init__(self, bag: Path, topic: str | None = None) -> None:
        self.path = bag
        self.topic, info = camera_topic(bag, topic)
        self._count = info.count
        self.shortfall: str | None = None

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[tuple[str, np.ndarray]]:
        yield from _one_size(self._frames())

    def _frames(self) -> Iterator[tuple[str, np.ndarray, str]]:
        shortfalls: list[str] = []
        for index, record in enumerate(stop_at_shortfall(read_image_messages(self.path, self.topic), shortfalls)):
            where = f"{self.path}: {self.topic} message {index} (stamp {record.stamp_ns})"
            try:
                frame = record_rgb(record)
            except ImageConversionError as exc:
                raise DataFormatError(f"{where} cannot be read: {exc} [{exc.cause}]") from exc
            yield f"{index:05d}_{record.stamp_ns}", frame, where
        self.shortfall = shortfalls[0] if shortfalls else None


FrameSource = FolderFrames | VideoFrames | BagFrames


def source_warnings(source: object) -> list[str]:
    """After iterating ``source``: the shortfall of a video or bag that yielded fewer frames than it
    declares, as a list for summary.json (empty for a complete input or another source)."""
    shortfall = source.shortfall if isinstance(source, (VideoFrames, BagFrames)) else None
    return [shortfall] if shortfall else []


def open_frames(path: str | Path, topic: str | None = None) -> FrameSource:
    """A folder of images, a video file or a rosbag2 bag (``topic``: its camera topic, None = the
    only one) -> a FrameSource. InputError if ``path`` does not exist, or for a ``topic``
    without a bag."""
    path = Path(path)
    if is_bag(path):
        return BagFrames(path, topic)
    if topic is not None:
        raise InputError(f"--topic applies to a rosbag2 bag; {path} is not one (a folder with metadata.yaml, "
                         "or a .mcap / .db3 file)")
    if path.is_dir():
        return FolderFrames(path)
    if path.is_file():
        return VideoFrames(path)
    raise InputError(f"{path}: no such file or folder")
