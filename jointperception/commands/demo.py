"""``jointperception demo``: the ROS 2 pipeline over real DDS, from a synthetic bag to a report.

1. ``record-sample``: a synthetic bag with GT topics (OUT/sample_bag, no download); with
   ``--compression jpeg|png`` its frames are CompressedImages and the node runs with
   ``image_transport:=compressed``.
2. ``perception_node``, ``bag_recorder`` and ``bag_player`` as separate processes on loopback
   (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, a domain id of their own, the shared-memory Fast DDS
   profile); the player runs in lock-step with the node's mask (deterministic), or at the bag
   timing scaled by ``--rate``; the recorder writes OUT/node_bag (mcap).
3. OUT/metrics.json and OUT/report.html: fps, latency (output received - input received), drops
   from /diagnostics, scores against the GT, sample strips; logs in OUT/logs/.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from jointperception.commands import record_sample
from jointperception.commands.argument_types import network_size, parse_size
from jointperception.errors import InputError
from jointperception.eval.node_run import score_node_run
from jointperception.eval.replay import ReplaySettings, output_topics
from jointperception.eval.report import replay_metrics, write_metrics, write_report, write_sample_strip
from jointperception.outputs import staged_folder
from jointperception.runtime.backends import BACKEND_NAMES
from jointperception.runtime.ros_processes import RosChildren, pick_domain_id

HELP = "play a synthetic bag through perception_node over DDS, record the outputs, write a report"
TOPIC = "/camera/image_raw"
NODE = "/jointperception_node"
DIAGNOSTICS_PERIOD_S = 0.5
RECORDED_OUTPUTS = ("mask", "flow", "occlusion", "motion_layers")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder (written whole or not at all, docs/outputs.md)")
    parser.add_argument("--model", type=Path, default=None, help="model file (default: the bundled model)")
    parser.add_argument("--frames", type=int, default=record_sample.SYNTHETIC_FRAMES, help="frames of the synthetic bag (2..16)")
    parser.add_argument("--seed", type=int, default=7, help="scene seed")
    parser.add_argument("--size", type=parse_size, default=(320, 240), metavar="WxH", help="frame size")
    parser.add_argument("--network-size", type=network_size, default=(320, 240), metavar="WxH",
                        help="the node's network input size")
    parser.add_argument("--backend", choices=BACKEND_NAMES, default="auto",
                        help="the node's backend (auto: ONNX Runtime on this CPU; the export is cached)")
    parser.add_argument("--rate", type=float, default=None,
                        help="play at the bag timing (30 fps) scaled by this instead of lock-step")
    parser.add_argument("--domain-id", type=int, default=None,
                        help="ROS_DOMAIN_ID of the children (default: $ROS_DOMAIN_ID, else random)")
    parser.add_argument("--timeout", type=float, default=240.0, help="give up on the player after this many s")
    parser.add_argument("--compression", choices=("none", "jpeg", "png"), default="none",
                        help="frames as CompressedImage on /camera/image_raw/compressed, the node's image_transport compressed")


def camera_topic(args: argparse.Namespace) -> str:
    """The topic the frames travel on: TOPIC, or its /compressed topic."""
    return TOPIC if args.compression == "none" else f"{TOPIC}/compressed"


def _record_sample(args: argparse.Namespace, bag: Path) -> None:
    parser = argparse.ArgumentParser()
    record_sample.add_arguments(parser)
    width, height = args.size
    record_sample.run(parser.parse_args(["--out", str(bag), "--frames", str(args.frames), "--size",
                                         f"{width}x{height}", "--seed", str(args.seed), "--topic", TOPIC,
                                         "--compression", args.compression]))


def _failure(children: RosChildren, name: str, what: str) -> InputError:
    return InputError(f"{name} {what}; see {children.log_path(name)}: {children.log_tail(name)}")


def _run_graph(args: argparse.Namespace, children: RosChildren, sample_bag: Path, node_bag: Path) -> None:
    """Node + recorder + player; returns once the player is done and the recorder closed its bag."""
    width, height = args.network_size
    model = ["-p", f"model:={args.model.resolve()}"] if args.model is not None else []  # none: bundled
    node_args = ["--ros-args", *model, "-p", "threads:=2", "-p", f"backend:={args.backend}",
                 "-p", f"network_width:={width}", "-p", f"network_height:={height}",
                 "-p", f"diagnostics_period_s:={DIAGNOSTICS_PERIOD_S}", "-r", f"image:={TOPIC}",
                 "-p", f"image_transport:={'raw' if args.compression == 'none' else 'compressed'}"]
    children.start("perception_node", "jointperception.ros.perception_node", node_args)
    outputs = output_topics(NODE)
    from_node = [*(outputs[n] for n in RECORDED_OUTPUTS), "/diagnostics"]
    children.start("bag_recorder", "jointperception.ros.bag_recorder",
                   [str(node_bag), "--topics", camera_topic(args), *from_node])
    # the node's outputs reach the recorder before the first frame goes out
    children.wait_for_log("bag_recorder", [f"bag_recorder: matched {topic}" for topic in from_node], args.timeout)
    pacing = ["--lockstep-topic", outputs["mask"]] if args.rate is None else ["--rate", str(args.rate)]
    player = children.start("bag_player", "jointperception.ros.bag_player",
                            [str(sample_bag), "--topics", camera_topic(args), "--wait-subscribers", "2", "--delay", "1.0",
                             *pacing])
    node = children.processes["perception_node"]
    deadline = time.monotonic() + args.timeout
    while player.poll() is None:
        if node.poll() is not None:  # a node that died (bad model, ...) would leave the player waiting
            raise _failure(children, "perception_node", f"stopped early (exit code {node.returncode})")
        if time.monotonic() > deadline:
            raise _failure(children, "bag_player", f"did not finish within {args.timeout} s")
        time.sleep(0.1)
    if player.returncode != 0:
        raise _failure(children, "bag_player", f"exited with code {player.returncode}")
    time.sleep(2 * DIAGNOSTICS_PERIOD_S + 0.5)  # the last outputs and one more /diagnostics
    if node.poll() is not None:
        raise _failure(children, "perception_node", f"stopped early (exit code {node.returncode})")
    for name in ("bag_recorder", "perception_node"):
        if (code := children.stop(name)) != 0:
            raise _failure(children, name, f"exited with code {code}")


def run(args: argparse.Namespace) -> int:
    if args.frames < 2:
        raise InputError(f"--frames must be at least 2, got {args.frames}")
    if args.rate is not None and args.rate <= 0:
        raise InputError(f"--rate must be > 0, got {args.rate}")
    if args.model is not None and not args.model.is_file():
        raise InputError(f"model file not found: {args.model}")
    out: Path = args.out
    sample_bag, node_bag = out / "sample_bag", out / "node_bag"
    with staged_folder(out, "demo", keep_failed=True) as staging:  # a failed run keeps its logs in OUT.partial
        staging.mkdir()
        _record_sample(args, staging / sample_bag.name)
        domain_id = pick_domain_id(args.domain_id)
        started = time.monotonic()
        with RosChildren(domain_id, staging / "logs") as children:
            _run_graph(args, children, staging / sample_bag.name, staging / node_bag.name)
        graph_s = time.monotonic() - started

        samples: list[Path] = []
        result = score_node_run(staging / sample_bag.name, staging / node_bag.name,
                                ReplaySettings(topic=camera_topic(args), output_prefix=NODE),
                                lambda stamp, rgb, outputs: samples.append(write_sample_strip(staging, stamp, rgb, outputs)))
        facts = {"input_bag": str(sample_bag), "topic": camera_topic(args), "output_bag": str(node_bag),
                 "model": str(args.model or "bundled"), "backend": args.backend,
                 "network_size": "x".join(map(str, args.network_size)),
                 "pacing": "lock-step" if args.rate is None else f"bag timing x {args.rate}",
                 "ros_domain_id": domain_id, "graph_s": graph_s,
                 "latency": "output received - input received (recorder clock)"}
        metrics = replay_metrics(result, facts)
        write_metrics(staging / "metrics.json", metrics)
        write_report(staging, metrics, samples)
    metrics_path, report_path = out / "metrics.json", out / "report.html"

    latency, counts = metrics["latency_ms"], result.counts
    print(f"pipeline:    bag_player -> perception_node -> bag_recorder over DDS (domain {domain_id}, "
          f"{facts['pacing']}), {graph_s:.1f} s")
    print(f"throughput:  {metrics['throughput_fps']:.1f} fps ({counts['processed']} frames with outputs "
          f"of {counts['frames in bag']})")
    print(f"latency:     p50 {latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms (input received -> output received)")
    print(f"drops:       {counts['dropped (node)']} dropped by the node, "
          f"{counts['no output (first frame excluded)']} frames without output")
    for kind, values in result.gt.items():
        shown = {k: v for k, v in values.items() if k in ("j_mean", "epe_all", "epe_noc", "fl_all")}
        print(f"vs GT {kind + ':':<6} " + ", ".join(f"{k} {v:.3f}" for k, v in shown.items()))
    print(f"sample bag:  {sample_bag}\nnode bag:    {node_bag}\nlogs:        {out / 'logs'}")
    print(f"metrics:     {metrics_path}\nreport:      {report_path}")
    return 0
