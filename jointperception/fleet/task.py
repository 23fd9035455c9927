"""One bag of a fleet run: the function a Ray worker runs. It replays the bag exactly as
``jointperception replay`` does (``eval.replay_job.replay_to_folder``) into the bag's sub-folder,
unless the sub-folder already holds complete outputs of the same key (``content_key``).

A sub-folder is complete once DONE_FILE, written last, names the key. An attempt first writes
ATTEMPT_FILE (host, pid) and clears what an earlier, killed attempt left; a bag that fails with
the package's error (corrupt bag, missing topic...) leaves no sub-folder and returns its cause.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from jointperception.errors import JointPerceptionError
from jointperception.eval.replay_job import ReplayJob, replay_to_folder
from jointperception.fleet.content_key import content_sha256, outputs_key
from jointperception.outputs import write_text_atomic

OUT_BAG = "out_bag"  # the output bag inside the sub-folder, beside metrics.json and report.html
ATTEMPT_FILE = "attempt.json"
DONE_FILE = "fleet_task.json"
DONE, SKIPPED, FAILED = "done", "skipped", "failed"


@dataclass(frozen=True)
class BagTask:
    bag: Path  # input bag (resolved; the same path on every node)
    folder: Path  # its output sub-folder
    job: ReplayJob
    models_sha256: str  # content_key.models_sha256(job), hashed once by the driver
    threads: int = 1  # torch intra-op threads: the CPUs Ray reserved for the task


def _complete_metrics(folder: Path, key: str) -> dict[str, object] | None:
    """metrics.json of ``folder`` when DONE_FILE names ``key``; else None (absent, partial or stale)."""
    try:
        done = json.loads((folder / DONE_FILE).read_text())
        return json.loads((folder / "metrics.json").read_text()) if done.get("key") == key else None
    except (OSError, json.JSONDecodeError):
        return None


def outcome(task: BagTask, status: str, started: float, metrics: dict[str, object] | None = None,
            error: str | None = None) -> dict[str, object]:
    """What the driver gets back for one bag: status, cause of a failure, and the bag's metrics
    (metrics.json without its per-frame rows, plus the per-frame latencies for the fleet's plots)."""
    record: dict[str, object] = {"bag": str(task.bag), "name": task.folder.name, "status": status, "error": error,
                                 "host": socket.gethostname(), "pid": os.getpid(),
                                 "task_s": time.perf_counter() - started}
    if metrics is not None:
        rows = metrics.get("per_frame", [])
        record["metrics"] = {k: v for k, v in metrics.items() if k != "per_frame"}
        record["frame_latency_ms"] = [row["latency_ms"] for row in rows]
    return record


def run_bag_task(task: BagTask) -> dict[str, object]:
    """Replay ``task.bag`` into ``task.folder`` (or find it done) -> ``outcome`` record.

    Exceptions other than the package's errors (bugs) propagate; the sub-folder then stays
    incomplete and the next attempt or run starts it over."""
    started = time.perf_counter()
    torch.set_num_threads(task.threads)  # a reused worker keeps the count of its first task otherwise
    try:
        key = outputs_key(content_sha256(task.bag), task.models_sha256, task.job)
    except JointPerceptionError as exc:
        return outcome(task, FAILED, started, error=str(exc))
    metrics = _complete_metrics(task.folder, key)
    if metrics is not None:
        return outcome(task, SKIPPED, started, metrics)
    if task.folder.exists():  # stale, or left by a killed attempt
        shutil.rmtree(task.folder)
    task.folder.mkdir(parents=True)
    write_text_atomic(task.folder / ATTEMPT_FILE, json.dumps(
        {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}, indent=2) + "\n")
    try:
        run = replay_to_folder(task.job, task.bag, task.folder / OUT_BAG, task.folder)
    except JointPerceptionError as exc:
        shutil.rmtree(task.folder)
        return outcome(task, FAILED, started, error=str(exc))
    write_text_atomic(task.folder / DONE_FILE, json.dumps(
        {"key": key, "bag": str(task.bag), "host": socket.gethostname(), "pid": os.getpid(),
         "seconds": time.perf_counter() - started}, indent=2) + "\n")
    return outcome(task, DONE, started, run.metrics)
