"""``jointperception generate``: write synthetic sequences with exact ground truth to a folder."""
from __future__ import annotations

import argparse
from pathlib import Path

from jointperception.data.generate import generate_dataset
from jointperception.data.synthetic import MAX_FRAMES, MIN_SIZE
from jointperception.errors import InputError
from jointperception.outputs import staged_folder

HELP = "render synthetic sequences (frames, masks, flow, occlusion, layers) in a DAVIS-like layout"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="output folder (written whole or not at all, docs/outputs.md)")
    parser.add_argument("--sequences", type=int, default=10, help="number of sequences")
    parser.add_argument("--frames", type=int, default=8, help="frames per sequence (2..16)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first sequence (sequence i uses seed + i)")
    parser.add_argument("--height", type=int, default=240, help=f"frame height in pixels (>= {MIN_SIZE})")
    parser.add_argument("--width", type=int, default=320, help=f"frame width in pixels (>= {MIN_SIZE})")
    parser.add_argument("--max-objects", type=int, default=4, help="objects per scene are drawn from 1..K")
    parser.add_argument("--max-translation", type=float, default=8.0, help="largest object motion, pixels per frame")
    parser.add_argument("--no-photometric", action="store_true", help="no gain / blur / noise on the frames")


def _check(args: argparse.Namespace) -> None:
    if args.sequences < 1:
        raise InputError(f"--sequences must be at least 1, got {args.sequences}")
    if not 2 <= args.frames <= MAX_FRAMES:
        raise InputError(f"--frames must be in 2..{MAX_FRAMES}, got {args.frames}")
    if args.seed < 0:
        raise InputError(f"--seed must be >= 0, got {args.seed}")
    if args.height < MIN_SIZE or args.width < MIN_SIZE:
        raise InputError(f"--height and --width must be at least {MIN_SIZE}, got {args.height}x{args.width}")
    if args.max_objects < 1:
        raise InputError(f"--max-objects must be at least 1, got {args.max_objects}")
    if not args.max_translation > 0:
        raise InputError(f"--max-translation must be > 0, got {args.max_translation}")


def run(args: argparse.Namespace) -> int:
    _check(args)
    with staged_folder(args.out, "generate") as folder:
        names = generate_dataset(
            folder, args.sequences, args.frames, args.seed, args.height, args.width,
            max_objects=args.max_objects, max_translation=args.max_translation, photometric=not args.no_photometric,
        )
    print(f"wrote {len(names)} sequences of {args.frames} frames ({args.width}x{args.height}) to {args.out}")
    return 0
