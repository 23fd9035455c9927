"""``jointperception replay IN_BAG --topic T --out OUT_BAG``: the node's pipeline over a bag, offline.

Writes OUT_BAG (mcap: the input topic + every output topic with the input stamps), and in the
report folder (default: the folder that holds OUT_BAG) metrics.json and report.html.
"""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np

from jointperception.commands.predict import parse_size
from jointperception.commands.stage_options import add_stage_arguments, stage_settings
from jointperception.data.formats import read_mask, write_image
from jointperception.eval.replay import ReplaySettings, replay_bag
from jointperception.eval.report import (
    FILES_DIR,
    replay_metrics,
    write_metrics,
    write_report,
)
from jointperception.runtime.backends import BACKEND_NAMES
from jointperception.runtime.mask_memory import MAX_MEMORY_WEIGHT, check_memory_weight
from jointperception.runtime.motion_layers import MASK_SOURCES
from jointperception.runtime.pipeline import PairOutputs, PerceptionPipeline
from jointperception.viz import make_strip

HELP = "run the perception pipeline over a camera topic of a rosbag2 bag; write an output bag + report"


def _probability(text: str) -> float:
    """A threshold in [0, 1] (the node's range); argparse turns the error into a usage message."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = ReplaySettings()
    parser.add_argument("in_bag", type=Path, metavar="IN_BAG", help="rosbag2 bag (folder, .mcap or .db3)")
    parser.add_argument("--topic", default=defaults.topic, help="camera topic: sensor_msgs/Image or CompressedImage (e.g. /camera/image_raw/compressed)")
    parser.add_argument("--out", required=True, type=Path, help="output bag folder (mcap; must not exist)")
    parser.add_argument("--report-dir", type=Path, default=None,
                        help="folder for metrics.json and report.html (default: the folder holding --out)")
    parser.add_argument("--model", type=Path, default=None, help="model file (default: the bundled model)")
    parser.add_argument("--backend", choices=BACKEND_NAMES, default="torch", help="inference backend (default torch, as the node)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--network-size", type=parse_size, default=(320, 240), metavar="WxH",
                        help="network input size")
    parser.add_argument("--mask-source", choices=MASK_SOURCES, default="fused",
                        help="what the mask thresholds (the node's mask_source; see README)")
    parser.add_argument("--mask-threshold", type=_probability, default=0.5, help="mask = probability > this")
    parser.add_argument("--occlusion-threshold", type=_probability, default=0.5,
                        help="occlusion = probability > this")
    parser.add_argument("--mask-memory", type=float, default=defaults.mask_memory,
                        help="weight of the last mask carried along the flow (the node's mask_memory, "
                             f"0..{MAX_MEMORY_WEIGHT}; 0 = none)")
    add_stage_arguments(parser)
    parser.add_argument("--reset-gap-s", type=float, default=defaults.reset_gap_s,
                        help="forget the previous frame after a stamp gap this long (s); 0 = never")
    parser.add_argument("--output-prefix", default=defaults.output_prefix,
                        help="output topics are PREFIX/mask, PREFIX/flow, ... (the node's ~/ in the root namespace)")
    parser.add_argument("--samples", type=int, default=defaults.samples, help="sample strips in the report")
    parser.add_argument("--first-mask", type=Path, default=None, metavar="MASK.png",
                        help="mask of the topic's first frame (nonzero = object): follow that object as the node does "
                             "after an ~/object_mask (docs/first_mask.md; no fine-tuning)")


def run(args: argparse.Namespace) -> int:
    check_memory_weight(args.mask_memory)
    report_dir = args.report_dir if args.report_dir is not None else args.out.resolve().parent
    pipeline = PerceptionPipeline.from_model_file(args.model, args.backend, args.device, args.network_size)
    pipeline.mask_source = args.mask_source
    pipeline.mask_threshold = args.mask_threshold
    pipeline.occlusion_threshold = args.occlusion_threshold
    stages = stage_settings(args)
    pipeline.prealign, pipeline.refine, pipeline.refined_layers = stages["prealign"], stages["refine"], stages["refined_layers"]
    settings = ReplaySettings(topic=args.topic, output_prefix=args.output_prefix, reset_gap_s=args.reset_gap_s,
                              mask_memory=args.mask_memory, samples=args.samples)
    samples: list[Path] = []

    def save_sample(stamp_ns: int, rgb: np.ndarray, out: PairOutputs) -> None:
        path = report_dir / FILES_DIR / f"sample_{stamp_ns}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_image(path, make_strip(rgb, out.mask, out.flow, out.layers))
        samples.append(path)

    first_mask = read_mask(args.first_mask) if args.first_mask is not None else None
    result = replay_bag(pipeline, args.in_bag, args.out, settings, on_sample=save_sample, first_mask=first_mask)
    facts = {
        "input_bag": str(args.in_bag), "topic": args.topic, "output_bag": str(args.out),
        "model": str(pipeline.model_path), "backend": pipeline.backend.name, "device": pipeline.backend.device,
        "network_size": "x".join(map(str, pipeline.network_size)), "mask_source": args.mask_source, "mask_threshold": args.mask_threshold,
        "occlusion_threshold": args.occlusion_threshold, "mask_memory": args.mask_memory,
        "prealign": stages["prealign"], "refine_flow": stages["refine"], "refined_layers": stages["refined_layers"], "reset_gap_s": args.reset_gap_s,
        "first_mask": None if args.first_mask is None else str(args.first_mask),
    }
    metrics = replay_metrics(result, facts)
    metrics_path = write_metrics(report_dir / "metrics.json", metrics)
    report_path = write_report(report_dir, metrics, samples)
    latency = metrics["latency_ms"]
    print(f"replayed {result.counts.get('received', 0)} frames of {args.topic}: "
          f"{result.counts.get('processed', 0)} processed, {metrics['throughput_fps']:.1f} fps, "
          f"latency p50 {latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms")
    origins = Counter(row["mask_origin"] for row in result.frames if "mask_origin" in row)
    if origins:
        print("  mask per frame: " + ", ".join(f"{name} {count}" for name, count in sorted(origins.items())))
    for kind, values in result.gt.items():
        shown = {k: v for k, v in values.items() if k in ("j_mean", "epe_all", "epe_noc", "fl_all")}
        print(f"  vs GT {kind}: " + ", ".join(f"{k} {v:.3f}" for k, v in shown.items()))
    print(f"output bag: {args.out}\nmetrics:    {metrics_path}\nreport:     {report_path}")
    return 0
