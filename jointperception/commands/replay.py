"""``jointperception replay IN_BAG --topic T --out OUT_BAG``: the node's pipeline over a bag, offline.

Writes OUT_BAG (mcap: the input topic + every output topic with the input stamps), and in the
report folder (default: the folder that holds OUT_BAG) metrics.json and report.html.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from jointperception.commands.argument_types import in_range, network_size
from jointperception.commands.stage_options import add_stage_arguments, stage_settings
from jointperception.errors import EXIT_SHORT_INPUT
from jointperception.eval.replay import ReplaySettings
from jointperception.eval.replay_job import ReplayJob, replay_to_folder
from jointperception.runtime.backends import BACKEND_NAMES
from jointperception.runtime.mask_memory import MAX_MEMORY_WEIGHT, check_memory_weight
from jointperception.runtime.motion_layers import MASK_SOURCES

HELP = "run the perception pipeline over a camera topic of a rosbag2 bag; write an output bag + report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("in_bag", type=Path, metavar="IN_BAG", help="rosbag2 bag (folder, .mcap or .db3)")
    parser.add_argument("--out", required=True, type=Path, help="output bag folder (mcap; written whole or not at all, docs/outputs.md)")
    parser.add_argument("--report-dir", type=Path, default=None,
                        help="folder for metrics.json and report.html (default: the folder holding --out)")
    add_replay_options(parser)


def add_replay_options(parser: argparse.ArgumentParser) -> None:
    """The options of the pipeline and the replay (``replay_job`` reads them), shared with ``replay-fleet``."""
    defaults = ReplaySettings()
    parser.add_argument("--topic", default=defaults.topic, help="camera topic: sensor_msgs/Image or CompressedImage (e.g. /camera/image_raw/compressed)")
    parser.add_argument("--model", type=Path, default=None, help="model file (default: the bundled model)")
    parser.add_argument("--backend", choices=BACKEND_NAMES, default="torch", help="inference backend (default torch, as the node)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--network-size", type=network_size, default=(320, 240), metavar="WxH",
                        help="network input size")
    parser.add_argument("--mask-source", choices=MASK_SOURCES, default="fused",
                        help="what the mask thresholds (the node's mask_source; see README)")
    parser.add_argument("--mask-threshold", type=in_range("mask_threshold", float), default=0.5, help="mask = probability > this")
    parser.add_argument("--occlusion-threshold", type=in_range("occlusion_threshold", float), default=0.5,
                        help="occlusion = probability > this")
    parser.add_argument("--mask-memory", type=float, default=defaults.mask_memory,
                        help="weight of the last mask carried along the flow (the node's mask_memory, "
                             f"0..{MAX_MEMORY_WEIGHT}; 0 = none)")
    add_stage_arguments(parser)
    parser.add_argument("--reset-gap-s", type=in_range("reset_gap_s", float), default=defaults.reset_gap_s,
                        help="forget the previous frame after a stamp gap this long (s); 0 = never")
    parser.add_argument("--output-prefix", default=defaults.output_prefix,
                        help="output topics are PREFIX/mask, PREFIX/flow, ... (the node's ~/ in the root namespace)")
    parser.add_argument("--samples", type=int, default=defaults.samples, help="sample strips in the report")
    parser.add_argument("--first-mask", type=Path, default=None, metavar="MASK.png",
                        help="mask of the topic's first frame (nonzero = object): follow that object as the node does "
                             "after an ~/object_mask (docs/first_mask.md; no fine-tuning)")


def replay_job(args: argparse.Namespace) -> ReplayJob:
    """The parsed ``add_replay_options`` as a ReplayJob; InputError for a bad --mask-memory."""
    check_memory_weight(args.mask_memory)
    stages = stage_settings(args)
    settings = ReplaySettings(topic=args.topic, output_prefix=args.output_prefix, reset_gap_s=args.reset_gap_s,
                              mask_memory=args.mask_memory, samples=args.samples)
    return ReplayJob(model=args.model, backend=args.backend, device=args.device, network_size=args.network_size,
                     mask_source=args.mask_source, mask_threshold=args.mask_threshold,
                     occlusion_threshold=args.occlusion_threshold, settings=settings, first_mask=args.first_mask,
                     **stages)


def run(args: argparse.Namespace) -> int:
    job = replay_job(args)
    report_dir = args.report_dir if args.report_dir is not None else args.out.resolve().parent
    outcome = replay_to_folder(job, args.in_bag, args.out, report_dir)
    result, metrics = outcome.result, outcome.metrics
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
    print(f"output bag: {args.out}\nmetrics:    {outcome.metrics_path}\nreport:     {outcome.report_path}")
    for warning in result.warnings:
        print(f"jointperception replay: warning: {warning} (metrics.json lists it; exit {EXIT_SHORT_INPUT})",
              file=sys.stderr)
    return EXIT_SHORT_INPUT if result.warnings else 0
