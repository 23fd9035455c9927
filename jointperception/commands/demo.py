"""``jointperception demo``: predict on a rendered synthetic sequence and score it against its GT.

Writes OUT/frames/*.png, OUT/predictions/ (the ``predict`` file set, same code path),
OUT/strip.png (one row per frame: frame | mask | flow colour | layers), OUT/demo.avi (the same
rows as MJPG video) and OUT/metrics.json, and prints the scores and paths. A rerun overwrites
files of the same name and leaves others in place.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from jointperception.commands.predict import parse_size
from jointperception.data.formats import (
    read_flo,
    read_label_image,
    read_mask,
    write_image,
)
from jointperception.data.synthetic import SyntheticSequence, render_sequence
from jointperception.errors import DataFormatError, InputError
from jointperception.eval.metrics import aggregate_flow_errors, flow_errors, jaccard
from jointperception.runtime.pipeline import PerceptionPipeline
from jointperception.runtime.predict_files import predict_to_folder
from jointperception.viz import make_strip

HELP = "run the model on a rendered synthetic sequence, write a strip + video and print EPE / J"
VIDEO_FPS = 4.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder")
    parser.add_argument("--model", type=Path, default=None, help="model file (default: the bundled model)")
    parser.add_argument("--frames", type=int, default=8, help="frames in the synthetic sequence (>= 2)")
    parser.add_argument("--seed", type=int, default=7, help="scene seed")
    parser.add_argument("--size", type=parse_size, default=(320, 240), metavar="WxH", help="frame size")


def _write_video(path: Path, rows: list[np.ndarray]) -> None:
    """rows: (H, W, 3) uint8 RGB images of one size -> MJPG .avi."""
    height, width = rows[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), VIDEO_FPS, (width, height))
    if not writer.isOpened():
        raise DataFormatError(f"{path}: OpenCV cannot open an MJPG video writer")
    try:
        for row in rows:
            writer.write(cv2.cvtColor(row, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


def _score_and_draw(
    sequence: SyntheticSequence, stems: list[str], pred_dir: Path
) -> tuple[dict[str, object], list[np.ndarray]]:
    """Read the prediction files back, score them against the GT and draw one strip per frame."""
    flow_scores: list[dict[str, float]] = []
    zero_scores: list[dict[str, float]] = []
    j_scores: list[float] = []
    rows: list[np.ndarray] = []
    for t, stem in enumerate(stems):
        mask = read_mask(pred_dir / "mask" / f"{stem}.png")
        flow = None
        if t + 1 < len(stems):
            flow = read_flo(pred_dir / "flow" / f"{stem}.flo")
            gt, occlusion = sequence.flow_forward[t], sequence.occlusion_forward[t]
            flow_scores.append(flow_errors(flow, gt, occlusion))
            zero_scores.append(flow_errors(np.zeros_like(gt), gt, occlusion))
        j_scores.append(jaccard(mask, sequence.masks[t]))
        rows.append(make_strip(sequence.frames[t], mask, flow, read_label_image(pred_dir / "layers" / f"{stem}.png")))
    totals = aggregate_flow_errors(flow_scores)
    metrics: dict[str, object] = {
        "epe_all": totals["epe_all"],
        "epe_noc": totals["epe_noc"],
        "zero_flow_epe_all": aggregate_flow_errors(zero_scores)["epe_all"],
        "j_mean": float(np.mean(j_scores)),
        "j_per_frame": j_scores,
    }
    return metrics, rows


def run(args: argparse.Namespace) -> int:
    if args.frames < 2:
        raise InputError(f"--frames must be at least 2, got {args.frames}")
    width, height = args.size
    pipeline = PerceptionPipeline.from_model_file(args.model)  # fail on a bad model before rendering
    sequence = render_sequence(args.seed, args.frames, height, width)
    out: Path = args.out
    (out / "frames").mkdir(parents=True, exist_ok=True)
    stems = [f"{t:05d}" for t in range(args.frames)]
    for stem, frame in zip(stems, sequence.frames):
        write_image(out / "frames" / f"{stem}.png", frame)

    # the frames written above, fed from memory: a rerun with fewer frames must not pick up old files
    summary = predict_to_folder(pipeline, zip(stems, sequence.frames), out / "predictions")
    metrics, rows = _score_and_draw(sequence, stems, out / "predictions")
    metrics["latency_ms"] = summary["latency_ms"]
    write_image(out / "strip.png", np.concatenate(rows, axis=0))
    _write_video(out / "demo.avi", rows)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")

    print(f"model:       {pipeline.model_path}")
    print(f"sequence:    seed {args.seed}, {args.frames} frames of {width}x{height}")
    print(
        f"flow EPE:    {metrics['epe_all']:.2f} px all, {metrics['epe_noc']:.2f} px non-occluded "
        f"(zero-flow baseline {metrics['zero_flow_epe_all']:.2f} px)"
    )
    print(f"mask J:      {metrics['j_mean']:.3f} (mean over frames)")
    print(f"latency:     {summary['latency_ms']['p50']:.1f} ms per pair (p50, CPU)")
    print(f"frames:      {out / 'frames'}")
    print(f"predictions: {out / 'predictions'}")
    print(f"strip:       {out / 'strip.png'}")
    print(f"video:       {out / 'demo.avi'}")
    print(f"metrics:     {out / 'metrics.json'}")
    return 0
