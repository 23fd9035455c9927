"""``jointperception replay-fleet BAG... --out FOLDER``: ``replay`` over many bags on Ray, one task a
bag, each task the very code of ``replay`` (``eval.replay_job``).

FOLDER gets one sub-folder per bag (out_bag/, metrics.json, report.html, as ``replay``), fleet.json
and fleet_report.html. A re-run skips bags whose sub-folder is complete for the same bag bytes,
model bytes and settings. Exit status: 0 when every bag is done, EXIT_SOME_FAILED (3) when some
bags failed or were shorter than their metadata declares (fleet.json lists them under failures,
with their causes, and warnings), 2 for bad options or no bags.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from jointperception.commands.replay import add_replay_options, replay_job
from jointperception.errors import InputError
from jointperception.eval.report import write_metrics
from jointperception.fleet.content_key import job_settings, models_sha256
from jointperception.fleet.inputs import expand_bags, folder_names
from jointperception.fleet.ray_runner import TaskResources, check_fits, ray_session, run_tasks
from jointperception.fleet.summary import fleet_summary, write_fleet_report
from jointperception.fleet.task import DONE, FAILED, BagTask
from jointperception.models.weights import DEFAULT_MODEL_PATH

HELP = "replay many bags on Ray (this machine or a cluster), one task a bag; per-bag outputs + a fleet report"
EXIT_SOME_FAILED = 3
SUMMARY_JSON = "fleet.json"
SUMMARY_HTML = "fleet_report.html"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bags", nargs="+", metavar="BAG",
                        help="a bag (folder, .mcap or .db3), a quoted glob pattern of bags (** recurses), "
                             "or a text file listing one bag a line")
    parser.add_argument("--out", required=True, type=Path,
                        help="fleet folder: one sub-folder per bag, fleet.json and fleet_report.html "
                             "(run again to finish an interrupted fleet: complete bags are skipped)")
    parser.add_argument("--address", default=None,
                        help="Ray cluster to join (e.g. auto, or HEAD_IP:6379); default: start Ray on this machine")
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs of the Ray started here (default: all)")
    parser.add_argument("--num-gpus", type=int, default=None, help="GPUs of the Ray started here (default: all)")
    parser.add_argument("--cpus-per-bag", type=float, default=1.0,
                        help="Ray CPUs per bag task (torch threads: rounded up)")
    parser.add_argument("--gpus-per-bag", type=float, default=0.0,
                        help="Ray GPUs per bag task (fractions share a GPU); > 0 with --device cuda")
    parser.add_argument("--max-retries", type=int, default=3, help="re-runs of a bag whose worker process died")
    add_replay_options(parser)


def _check_resources(args: argparse.Namespace) -> TaskResources:
    if args.cpus_per_bag <= 0 or args.gpus_per_bag < 0 or args.max_retries < 0:
        raise InputError("--cpus-per-bag must be > 0, --gpus-per-bag and --max-retries >= 0")
    if args.first_mask is not None:
        raise InputError("--first-mask: one object mask belongs to one bag; run `jointperception replay` for it")
    if args.device.startswith("cuda") and args.gpus_per_bag <= 0:
        raise InputError("--device cuda needs --gpus-per-bag > 0 (Ray hides the GPUs from tasks that reserve none)")
    if args.address is not None and (args.num_cpus is not None or args.num_gpus is not None):
        raise InputError("--num-cpus / --num-gpus size the Ray started here; with --address the cluster has its own")
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"--out {args.out}: exists and is not a folder")
    return TaskResources(args.cpus_per_bag, args.gpus_per_bag, args.max_retries)


def _print_outcome(index: int, total: int, outcome: Mapping[str, object]) -> None:
    head = f"[{index}/{total}] {outcome['name']}: {outcome['status']}"
    if outcome["status"] == FAILED:
        print(f"{head}: {outcome['error']}", flush=True)
        return
    metrics = outcome["metrics"]
    print(f"{head}, {metrics['frames'].get('processed', 0)} frames"
          + (f", {metrics['throughput_fps']:.1f} fps, {outcome['task_s']:.1f} s" if outcome["status"] == DONE else ""),
          flush=True)


def run(args: argparse.Namespace) -> int:
    job = replay_job(args)
    resources = _check_resources(args)
    bags = expand_bags(args.bags)
    names = folder_names(bags)
    models = models_sha256(job)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    threads = math.ceil(args.cpus_per_bag)
    tasks = [BagTask(bag, out / names[bag], job, models, threads) for bag in bags]
    print(f"replay-fleet: {len(tasks)} bags -> {out}", flush=True)
    finished: list[Mapping[str, object]] = []

    def progress(outcome: Mapping[str, object]) -> None:
        finished.append(outcome)
        _print_outcome(len(finished), len(tasks), outcome)

    start = time.perf_counter()
    with ray_session(args.address, args.num_cpus, args.num_gpus) as local:
        if local:  # a cluster may grow (autoscaling): only the Ray started here is known to be short
            check_fits(resources)
        ray_start_s = time.perf_counter() - start
        outcomes = run_tasks(tasks, resources, progress)
    facts = {"command": "replay-fleet", "out": str(out), "ray": args.address or "local",
             "cpus_per_bag": args.cpus_per_bag, "gpus_per_bag": args.gpus_per_bag, "max_retries": args.max_retries,
             "model": str(job.model or DEFAULT_MODEL_PATH), "models_sha256": models, "ray_start_s": ray_start_s,
             "settings": job_settings(job)}
    summary = fleet_summary(outcomes, facts, time.perf_counter() - start - ray_start_s)
    summary_path = write_metrics(out / SUMMARY_JSON, summary)
    report_path = write_fleet_report(out / SUMMARY_HTML, summary, outcomes)
    counts, latency = summary["counts"], summary["latency_ms"]
    print(f"{summary['bags']} bags: {counts[DONE]} done, {counts['skipped']} skipped (complete), {counts[FAILED]} failed; "
          f"{summary['frames_processed']} frames, latency p50 {latency['p50']:.1f} ms, p99 {latency['p99']:.1f} ms, "
          f"{summary['wall_s']:.1f} s")
    for failure in summary["failures"]:
        print(f"  failed {failure['name']}: {failure['cause']}")
    for warning in summary["warnings"]:
        print(f"jointperception replay-fleet: warning: {warning['name']}: {warning['warning']} (fleet.json lists it; "
              f"exit {EXIT_SOME_FAILED})", file=sys.stderr)
    print(f"summary: {summary_path}\nreport:  {report_path}")
    return EXIT_SOME_FAILED if summary["failures"] or summary["warnings"] else 0
