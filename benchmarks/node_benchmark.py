"""perception_node on this CPU: 640x480 frames at 30 fps in, 320x240 network, bundled model.

bag_player loops a synthetic 640x480 bag at a fixed 30 Hz with header stamp = publish wall time;
perception_node and bag_recorder (its ~/mask and /diagnostics) run as separate processes over DDS
on loopback with the shared-memory profile. After the warm-up, for the measured window:
  processed fps = outputs stamped in the window / window length
  latency       = recorder receive time - input stamp (one wall clock: publish -> output received)
  drops         = the node's /diagnostics counters (window difference) and missing stamps: a gap
                  of k input periods between consecutive output stamps means k - 1 frames missed.
Targets (issue #5): >= 20 fps processed, p99 <= 100 ms. Prints the figures, writes
benchmarks/results/node_benchmark.json; no asserts.

This 2-core machine's run-to-run spread is as large as most effects, so ``--rounds N`` repeats
the measurement with fresh processes, and each ``--variant`` adds a configuration (extra node
parameters) measured in the same rounds, interleaved with the base one: the JSON keeps every
round of every configuration and a summary (medians, rounds meeting both targets). A
configuration with ``image_transport:=compressed`` is fed the same scene as JPEG CompressedImages
(quality 90) on /camera/image_raw/compressed.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/node_benchmark.py [--duration 20 --warmup 5] [--param NAME:=VALUE]
        [--rounds 3] [--variant NAME:=VALUE[,NAME:=VALUE]]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from jointperception.cli import main as cli_main
from jointperception.eval.node_run import node_statuses, read_log_times
from jointperception.eval.report import latency_stats
from jointperception.runtime.ros_processes import RosChildren, pick_domain_id

TOPIC = "/camera/image_raw"
NODE = "/jointperception_node"
TARGET_FPS, TARGET_P99_MS = 20.0, 100.0
COUNTERS = ("frames received", "frames processed", "dropped frames", "dropped: stale", "bad frames")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds after the warm-up")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of output ignored at the start")
    parser.add_argument("--rate-hz", type=float, default=30.0, help="input frame rate")
    parser.add_argument("--input-size", default="640x480", help="WxH of the published frames")
    parser.add_argument("--network-size", default="320x240", help="WxH of the node's network input")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="the node's torch threads")
    parser.add_argument("--backend", default="auto", help="the node's backend (auto, torch, onnxruntime)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                        help="another node parameter, e.g. refine_flow:=false (repeatable)")
    parser.add_argument("--rounds", type=int, default=1, help="measurements of every configuration, interleaved")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:=VALUE[,NAME:=VALUE]",
                        help="another configuration: the base parameters plus these (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/node_benchmark.json"), help="JSON result")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    return args


def run_graph(args: argparse.Namespace, params: list[str], bags: dict[str, Path], recorded: Path, logs: Path) -> float:
    """Node (with the extra ``params``), recorder and looping player of the bag of the node's
    image transport (``bags``: "raw" / "compressed" -> bag); returns the wall time the player ran."""
    compressed = "image_transport:=compressed" in params
    bag, topic = (bags["compressed"], f"{TOPIC}/compressed") if compressed else (bags["raw"], TOPIC)
    width, height = args.network_size.split("x")
    node_args = ["--ros-args", "-p", f"threads:={args.threads}", "-p", f"backend:={args.backend}",
                 "-p", f"network_width:={width}", "-p", f"network_height:={height}",
                 "-p", "diagnostics_period_s:=0.5", *(part for param in params for part in ("-p", param)),
                 "-r", f"image:={TOPIC}"]
    with RosChildren(pick_domain_id(), logs) as children:
        node = children.start("perception_node", "jointperception.ros.perception_node", node_args)
        children.start("bag_recorder", "jointperception.ros.bag_recorder",
                       [str(recorded), "--topics", f"{NODE}/mask", "/diagnostics"])
        children.wait_for_log("bag_recorder", [f"bag_recorder: matched {t}" for t in (f"{NODE}/mask", "/diagnostics")],
                              120.0)
        started = time.monotonic()
        player = children.start("bag_player", "jointperception.ros.bag_player",
                                [str(bag), "--topics", topic, "--rate-hz", str(args.rate_hz), "--loop", "--restamp",
                                 "--duration", str(args.warmup + args.duration + 2.0),
                                 "--wait-subscribers", "1", "--delay", "1.0"])
        while player.poll() is None and node.poll() is None:
            time.sleep(0.2)
        if player.returncode != 0 or node.poll() is not None:
            raise SystemExit(f"graph failed; logs in {logs}: {children.log_tail('bag_player')} | "
                             f"{children.log_tail('perception_node')}")
        played_s = time.monotonic() - started
        time.sleep(1.5)  # the last outputs and a /diagnostics message
        children.stop("bag_recorder")
    return played_s


def measure(args: argparse.Namespace, recorded: Path) -> dict[str, object]:
    """Figures of the window [first output + warmup, + duration] (output stamps = publish times)."""
    received = read_log_times(recorded, [f"{NODE}/mask"])[f"{NODE}/mask"]
    stamps = np.array(sorted(received), dtype=np.int64)
    if stamps.size == 0:
        raise SystemExit(f"no output recorded in {recorded}")
    begin = stamps[0] + int(args.warmup * 1e9)
    end = begin + int(args.duration * 1e9)
    window = stamps[(stamps >= begin) & (stamps < end)]
    latency_ms = [(received[int(s)] - int(s)) / 1e6 for s in window]
    period_ns = 1e9 / args.rate_hz
    missing = int(np.sum(np.maximum(np.round(np.diff(window) / period_ns) - 1, 0))) if window.size > 1 else 0
    statuses = node_statuses(recorded, NODE)
    # cumulative counters: the difference between the statuses nearest the window ends
    begin_log, at_begin = next(((log, values) for log, values in statuses if log >= begin), (begin, {}))
    end_log, at_end = next(((log, values) for log, values in reversed(statuses) if log <= end), (end, {}))
    counters = {key: int(at_end.get(key, 0)) - int(at_begin.get(key, 0)) for key in COUNTERS}
    counted_s = max(end_log - begin_log, 1) / 1e9
    fps = window.size / args.duration
    stats = latency_stats(latency_ms)
    return {
        "processed_fps": fps, "outputs_in_window": int(window.size), "latency_ms": stats,
        "missing_stamps": missing, "diagnostics_window": counters, "diagnostics_window_s": counted_s,
        "input_fps_at_node": counters["frames received"] / counted_s,
        "diagnostics_inference_p50_ms": at_end.get("inference p50 (ms)"),
        "targets": {"fps>=20": bool(fps >= TARGET_FPS), "p99<=100ms": bool(stats["p99"] <= TARGET_P99_MS)},
    }


def summary(rounds: list[dict[str, object]]) -> dict[str, object]:
    """Medians over the rounds of one configuration and how many rounds met each target."""
    return {
        "rounds": len(rounds),
        "processed_fps_median": float(np.median([r["processed_fps"] for r in rounds])),
        "latency_p99_ms_median": float(np.median([r["latency_ms"]["p99"] for r in rounds])),
        "rounds_meeting": {key: sum(r["targets"][key] for r in rounds) for key in ("fps>=20", "p99<=100ms")},
        "rounds_meeting_both": sum(all(r["targets"].values()) for r in rounds),
    }


def print_round(name: str, figures: dict[str, object]) -> None:
    latency = figures["latency_ms"]
    print(f"[{name}] processed {figures['processed_fps']:.1f} fps ({figures['outputs_in_window']} outputs; input "
          f"reaching the node {figures['input_fps_at_node']:.1f} fps); latency p50 {latency['p50']:.1f}, "
          f"p90 {latency['p90']:.1f}, p99 {latency['p99']:.1f} ms (input stamp -> output received); drops "
          f"{figures['diagnostics_window']['dropped frames']} (node /diagnostics), {figures['missing_stamps']} "
          "missing stamps; " + ", ".join(f"{key} {'holds' if ok else 'MISSED'}" for key, ok in figures["targets"].items()))


def main() -> None:
    args = parse_args()
    configurations = {"base": list(args.param)}
    for variant in args.variant:
        configurations[variant] = [*args.param, *variant.split(",")]
    load_before = os.getloadavg()
    rounds: dict[str, list[dict[str, object]]] = {name: [] for name in configurations}
    print(f"node, {args.input_size} at {args.rate_hz:g} fps in, network {args.network_size}, {args.threads} threads, "
          f"{args.duration:g} s after {args.warmup:g} s warm-up, {args.rounds} round(s) (load before {load_before[0]:.1f})")
    with tempfile.TemporaryDirectory(prefix="jointperception-node-bench-") as tmp:
        bags = {"raw": Path(tmp) / "input", "compressed": Path(tmp) / "input_jpeg"}
        for transport, bag in bags.items():
            extra = ["--compression", "jpeg", "--jpeg-quality", "90"] if transport == "compressed" else []
            if cli_main(["record-sample", "--out", str(bag), "--frames", "16", "--size", args.input_size, *extra]) != 0:
                raise SystemExit("record-sample failed")
        for index in range(args.rounds):
            for number, (name, params) in enumerate(configurations.items()):
                run = Path(tmp) / f"round{index}-configuration{number}"
                played_s = run_graph(args, params, bags, run / "recorded", run / "logs")
                figures = {"player_s": played_s, **measure(args, run / "recorded")}
                rounds[name].append(figures)
                print_round(name, figures)
    result = {
        "config": {"input_size": args.input_size, "rate_hz": args.rate_hz, "network_size": args.network_size,
                   "model": "bundled", "backend": args.backend, "threads": args.threads,
                   "warmup_s": args.warmup, "duration_s": args.duration, "parameters": args.param,
                   "dds": "Fast DDS, config/fastdds_shm.xml"},
        "machine": {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "configurations": {name: {"parameters": params, "summary": summary(rounds[name]), "rounds": rounds[name]}
                           for name, params in configurations.items()},
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for name, entry in result["configurations"].items():
        total = entry["summary"]
        print(f"[{name}] median over {total['rounds']} round(s): {total['processed_fps_median']:.1f} fps, p99 "
              f"{total['latency_p99_ms_median']:.1f} ms; both targets (fps>=20, p99<=100ms) met in "
              f"{total['rounds_meeting_both']} of {total['rounds']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
