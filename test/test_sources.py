"""Frame sources: image folders, video files and camera topics of rosbag2 bags."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from jointperception.data.bags import BagImageWriter
from jointperception.data.formats import write_image
from jointperception.data.sources import BagFrames, FolderFrames, VideoFrames, open_frames
from jointperception.errors import DataFormatError, InputError

H, W = 64, 96


def frame(value: int, height: int = H, width: int = W) -> np.ndarray:
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = value  # red carries the frame id, so a BGR/RGB mix-up is visible
    image[..., 2] = 255 - value
    return image


def test_folder_yields_images_sorted_by_name_and_ignores_other_files(tmp_path: Path) -> None:
    for name, value in [("b.png", 20), ("a.png", 10), ("c.jpg", 30), ("d.PNG", 40)]:
        write_image(tmp_path / name.lower(), frame(value))
    (tmp_path / "d.png").rename(tmp_path / "d.PNG")  # suffixes are matched case-insensitively
    (tmp_path / "notes.txt").write_text("not a frame")
    (tmp_path / "sub.png").mkdir()  # a folder named like an image is not a frame
    source = open_frames(tmp_path)
    assert isinstance(source, FolderFrames) and len(source) == 4
    items = list(source)
    assert [stem for stem, _ in items] == ["a", "b", "c", "d"]
    for (_, image), value in zip(items, [10, 20, 30, 40]):
        assert image.shape == (H, W, 3) and image.dtype == np.uint8
        assert abs(int(image[..., 0].mean()) - value) <= 2  # red
        assert abs(int(image[..., 2].mean()) - (255 - value)) <= 2  # blue
    assert [stem for stem, _ in source] == ["a", "b", "c", "d"]  # iterable again


def test_empty_folder_and_folder_without_images_raise(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no image"):
        open_frames(tmp_path)
    (tmp_path / "readme.md").write_text("hello")
    with pytest.raises(InputError, match=str(tmp_path)):
        open_frames(tmp_path)


def test_bag_frames_in_log_order_one_size_per_run(tmp_path: Path) -> None:
    """Image and PNG CompressedImage frames read alike; a frame of another size stops the run,
    naming that message and the first one."""
    with BagImageWriter(tmp_path / "bag") as writer:
        writer.write("/raw", 10, frame(1), "bgr8")
        writer.write_compressed("/png", 10, frame(1), "png")
        writer.write_compressed("/png", 20, frame(2), "png")
        writer.write_compressed("/png", 30, frame(3, height=H + 2), "png")
    raw = open_frames(tmp_path / "bag", "/raw")
    assert isinstance(raw, BagFrames) and len(raw) == 1
    assert [(stem, int(image[0, 0, 0])) for stem, image in raw] == [("00000_10", 254)]  # RGB bytes labelled bgr8: swapped
    compressed = open_frames(tmp_path / "bag", "/png")
    seen = []
    with pytest.raises(InputError, match=r"/png message 2 \(stamp 30\): frame size 96x66 .*message 0 \(stamp 10\)"):
        for stem, image in compressed:
            seen.append((stem, int(image[0, 0, 0])))
    assert seen == [("00000_10", 1), ("00001_20", 2)]


def test_mixed_sizes_name_the_file(tmp_path: Path) -> None:
    write_image(tmp_path / "0001.png", frame(1))
    write_image(tmp_path / "0002.png", frame(2))
    write_image(tmp_path / "0003.png", frame(3, height=H + 2))
    source = open_frames(tmp_path)
    stems = []
    with pytest.raises(InputError, match="0003.png"):
        for stem, _ in source:
            stems.append(stem)
    assert stems == ["0001", "0002"]


def test_undecodable_image_names_the_file(tmp_path: Path) -> None:
    write_image(tmp_path / "0001.png", frame(1))
    (tmp_path / "0002.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataFormatError, match="0002.jpg"):
        list(open_frames(tmp_path))


def test_duplicate_stems_are_rejected(tmp_path: Path) -> None:
    write_image(tmp_path / "0001.png", frame(1))
    write_image(tmp_path / "0001.jpg", frame(1))
    with pytest.raises(InputError, match="0001"):
        open_frames(tmp_path)


def test_missing_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nowhere"):
        open_frames(tmp_path / "nowhere")


def test_video_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (W, H))
    assert writer.isOpened(), "OpenCV cannot write MJPG .avi here"
    values = [20, 80, 140, 200, 250]
    for value in values:
        writer.write(cv2.cvtColor(frame(value), cv2.COLOR_RGB2BGR))
    writer.release()
    source = open_frames(path)
    assert isinstance(source, VideoFrames) and source.estimated_frames == len(values)
    items = list(source)
    assert [stem for stem, _ in items] == [f"{i:05d}" for i in range(len(values))]
    for (_, image), value in zip(items, values):
        assert image.shape == (H, W, 3) and image.dtype == np.uint8
        assert abs(float(image[..., 0].mean()) - value) < 6  # lossy codec: approximately equal
        assert abs(float(image[..., 2].mean()) - (255 - value)) < 6
    assert len(list(source)) == len(values)  # a second pass starts again


def test_unreadable_video_raises(tmp_path: Path) -> None:
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"definitely not a video container" * 10)
    with pytest.raises(DataFormatError, match="broken.mp4"):
        list(open_frames(path))


def test_video_without_frames_raises(tmp_path: Path) -> None:
    path = tmp_path / "empty.avi"
    cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (W, H)).release()
    with pytest.raises(DataFormatError, match="no frames") as info:
        list(open_frames(path))
    assert str(path) in str(info.value)
