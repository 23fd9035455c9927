"""``jointperception record-sample --out BAG``: a rosbag2 bag of camera frames to replay or play.

Sources: a folder of images (sorted by name), a video file, or ``synthetic`` (a rendered scene;
its bag also holds GT topics stamped like the frames: /gt/mask mono8 255 = moving, for every
frame; /gt/flow 32FC2 and /gt/occlusion mono8 for every frame but the first, in the convention of
the node's ~/flow and ~/occlusion: frame t -> frame t-1 on frame t pixels). Frame i is stamped
start + i / rate. With ``--compression jpeg|png`` the frames are sensor_msgs/CompressedImage on
``<topic>/compressed`` (image_transport's name for the compressed transport); GT stays raw.
"""
from __future__ import annotations

import argparse
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import cv2
import numpy as np

from jointperception.commands.argument_types import parse_size
from jointperception.data.bags import STORAGES, BagImageWriter
from jointperception.data.sources import FrameSource, open_frames
from jointperception.data.synthetic import SyntheticSequence, render_sequence
from jointperception.errors import InputError
from jointperception.outputs import staged_folder

HELP = "write a rosbag2 bag of camera frames from a folder, a video or a synthetic scene (with GT)"
SYNTHETIC = "synthetic"
SYNTHETIC_SIZE = (320, 240)
SYNTHETIC_FRAMES = 16  # frames of the synthetic scene (render_sequence allows up to MAX_FRAMES)
# GT name -> (topic, encoding)
GT_TOPICS = {"mask": ("/gt/mask", "mono8"), "flow": ("/gt/flow", "32FC2"), "occlusion": ("/gt/occlusion", "mono8")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="bag folder (written whole or not at all, docs/outputs.md)")
    parser.add_argument("--source", default=SYNTHETIC,
                        help="image folder, video file, or 'synthetic' (default; with GT topics)")
    parser.add_argument("--frames", type=int, default=None,
                        help=f"frames to write (default: all of a folder or video, {SYNTHETIC_FRAMES} synthetic)")
    parser.add_argument("--size", type=parse_size, default=None, metavar="WxH",
                        help=f"frame size (default: the source's; synthetic {SYNTHETIC_SIZE[0]}x{SYNTHETIC_SIZE[1]})")
    parser.add_argument("--storage", choices=tuple(STORAGES), default="mcap", help="rosbag2 storage plugin")
    parser.add_argument("--topic", default="/camera/image_raw", help="image topic")
    parser.add_argument("--encoding", choices=("rgb8", "bgr8"), default="rgb8", help="image encoding (raw frames)")
    parser.add_argument("--compression", choices=("none", "jpeg", "png"), default="none",
                        help="write the frames as CompressedImage on TOPIC/compressed (jpeg lossy, png lossless)")
    parser.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality 1..100 (--compression jpeg)")
    parser.add_argument("--frame-id", default="camera", help="header frame_id")
    parser.add_argument("--rate", type=float, default=30.0, help="frames per second of the stamps")
    parser.add_argument("--start", type=float, default=1_700_000_000.0, help="stamp of the first frame (s)")
    parser.add_argument("--seed", type=int, default=0, help="synthetic scene seed")


def _synthetic(sequence: SyntheticSequence) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """(frame (H, W, 3) uint8, GT name -> array as its topic's image) per frame."""
    for t, frame in enumerate(sequence.frames):
        gt = {"mask": sequence.masks[t].astype(np.uint8) * 255}
        if t > 0:  # frame t -> t-1 on frame t pixels: the backward GT of the pair (t-1, t)
            gt["flow"] = sequence.flow_backward[t - 1]
            gt["occlusion"] = sequence.occlusion_backward[t - 1].astype(np.uint8) * 255
        yield frame, gt


def _resized(source: FrameSource, frames: int | None,
             size: tuple[int, int] | None) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """The first ``frames`` (None = all) frames of ``source``, resized to ``size`` (W, H) if given."""
    for _stem, frame in islice(source, frames):
        if size is not None and (frame.shape[1], frame.shape[0]) != size:
            frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        yield frame, {}


def run(args: argparse.Namespace) -> int:
    if args.rate <= 0:
        raise InputError(f"--rate must be > 0, got {args.rate}")
    if args.frames is not None and args.frames < 1:
        raise InputError(f"--frames must be >= 1, got {args.frames}")
    if not 1 <= args.jpeg_quality <= 100:
        raise InputError(f"--jpeg-quality must be in 1..100, got {args.jpeg_quality}")
    if args.source == SYNTHETIC:  # rendered (and checked) before the bag is created
        width, height = args.size or SYNTHETIC_SIZE
        items = _synthetic(render_sequence(args.seed, args.frames or SYNTHETIC_FRAMES, height, width))
    else:
        items = _resized(open_frames(args.source), args.frames, args.size)
    start_ns = round(args.start * 1e9)
    with staged_folder(args.out, "record-sample") as folder, BagImageWriter(folder, storage=args.storage) as writer:
        for index, (rgb, gt) in enumerate(items):
            stamp_ns = start_ns + round(index * 1e9 / args.rate)
            if args.compression != "none":
                writer.write_compressed(f"{args.topic}/compressed", stamp_ns, rgb, args.compression,
                                        args.jpeg_quality, args.frame_id)
            else:
                image = rgb[..., ::-1] if args.encoding == "bgr8" else rgb
                writer.write(args.topic, stamp_ns, np.ascontiguousarray(image), args.encoding, args.frame_id)
            for name, array in gt.items():
                topic, encoding = GT_TOPICS[name]
                writer.write(topic, stamp_ns, array, encoding, args.frame_id)
        counts = dict(writer.counts)
    listing = ", ".join(f"{topic} ({count})" for topic, count in counts.items())
    print(f"wrote {args.out} ({args.storage}): {listing}")
    return 0
