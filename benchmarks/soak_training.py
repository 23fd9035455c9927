"""The soak bench's training phase (benchmarks/soak.py): a short ``train`` run of
config/train_smoke.yaml (``--max-steps`` STEPS) done once uninterrupted and once killed with SIGKILL
at ``kills`` random moments, each time started again with ``--resume auto``, then run to the end.
A kill comes once the session has logged a new training step, after a seeded random fraction
(KILL_FRACTIONS) of the uninterrupted run's training time (its metrics.jsonl "hours"): anywhere in
a step, a validation or a checkpoint write. Every tensor of the two final ``last.pt`` model states
(and of the optimizer states) is compared bit for bit."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from jointperception.resources import shipped_file
from jointperception.train.checkpoint import LAST_NAME, TMP_SUFFIX, load_checkpoint

CONFIG = "config/train_smoke.yaml"
KILL_FRACTIONS = (0.02, 0.25)  # of the training time, after a session's first logged step


def train_command(run_dir: Path, max_steps: int) -> list[str]:
    return [sys.executable, "-m", "jointperception", "train", "--config", str(shipped_file(CONFIG)), "--out",
            str(run_dir), "--device", "cpu", "--max-steps", str(max_steps), "--resume", "auto"]


def start_training(run_dir: Path, max_steps: int) -> subprocess.Popen:
    """One session of the run in ``run_dir`` (one torch thread, log appended to run_dir.log)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with open(run_dir.with_suffix(".log"), "ab") as log:
        return subprocess.Popen(train_command(run_dir, max_steps), env=env, stdout=log, stderr=subprocess.STDOUT)


def checkpoint_step(run_dir: Path) -> int | None:
    """Optimizer steps in ``run_dir``'s last.pt, None before the first one is written."""
    last = run_dir / LAST_NAME
    return int(load_checkpoint(last)["step"]) if last.exists() else None


def metrics(run_dir: Path) -> list[dict[str, object]]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def training_seconds(run_dir: Path) -> float:
    """Training wall time of a finished run (its last validation line's hours)."""
    return 3600.0 * max(float(line["hours"]) for line in metrics(run_dir) if line["kind"] == "val")


def logged_step(run_dir: Path) -> int:
    """The highest step of a "train" line in metrics.jsonl, 0 before any."""
    return max((int(line["step"]) for line in metrics(run_dir) if line["kind"] == "train"), default=0)


def kill_during_training(run_dir: Path, max_steps: int, delay_s: float) -> dict[str, object]:
    """One session: started, SIGKILLed ``delay_s`` after it logs a step beyond any logged before (it
    replays at most the steps since the last checkpoint first), unless it ends before."""
    start_step = checkpoint_step(run_dir) or 0
    beyond = max(start_step, logged_step(run_dir))
    process = start_training(run_dir, max_steps)
    while process.poll() is None and logged_step(run_dir) <= beyond:
        time.sleep(0.05)
    try:
        exit_code = process.wait(delay_s)  # finished before its kill came
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        exit_code = process.wait()
    return {"started_at_step": start_step, "kill_after_first_step_s": round(delay_s, 3), "exit_code": exit_code,
            "killed": exit_code == -signal.SIGKILL, "logged_step_at_kill": logged_step(run_dir),
            "step_in_last_pt": checkpoint_step(run_dir),
            "stale_temporaries": sorted(p.name for p in run_dir.glob(f".*{TMP_SUFFIX}"))}


def differing_tensors(first: dict, second: dict, prefix: str = "") -> list[str]:
    """Names of the tensors (at any depth of nested dicts and lists) that are not bit-identical."""
    if isinstance(first, torch.Tensor):
        same = isinstance(second, torch.Tensor) and first.dtype == second.dtype and torch.equal(first, second)
        return [] if same else [prefix]
    if isinstance(first, dict):
        if not isinstance(second, dict) or first.keys() != second.keys():
            return [prefix]
        return [name for key in first for name in differing_tensors(first[key], second[key], f"{prefix}.{key}")]
    if isinstance(first, list | tuple):
        if not isinstance(second, list | tuple) or len(first) != len(second):
            return [prefix]
        return [name for i, (a, b) in enumerate(zip(first, second)) for name in differing_tensors(a, b, f"{prefix}[{i}]")]
    return [] if first == second else [prefix]


def kill_and_resume(work: Path, max_steps: int, kills: int, seed: int) -> dict[str, object]:
    """Both runs under ``work``; the record of every session and the comparison of the final states."""
    work.mkdir(parents=True, exist_ok=True)
    whole, killed = work / "uninterrupted", work / "killed"
    started = time.monotonic()
    whole_exit = start_training(whole, max_steps).wait()
    whole_s = time.monotonic() - started
    if whole_exit != 0:
        return {"identical": None, "reason": f"the uninterrupted run failed; log {whole}.log"}
    train_s = training_seconds(whole)
    rng = random.Random(seed)
    sessions = [kill_during_training(killed, max_steps, rng.uniform(*KILL_FRACTIONS) * train_s) for _ in range(kills)]
    start_step = checkpoint_step(killed) or 0
    final_exit = start_training(killed, max_steps).wait()
    sessions.append({"started_at_step": start_step, "exit_code": final_exit, "killed": False,
                     "step_in_last_pt": checkpoint_step(killed),
                     "stale_temporaries": sorted(p.name for p in killed.glob(f".*{TMP_SUFFIX}"))})
    result: dict[str, object] = {
        "command": " ".join(train_command(Path("RUN"), max_steps)[1:]).replace(str(shipped_file(CONFIG)), CONFIG), "max_steps": max_steps, "seed": seed,
        "uninterrupted_s": round(whole_s, 2), "uninterrupted_training_s": round(train_s, 2), "sessions": sessions,
        "kills_landed": sum(s["killed"] for s in sessions),
    }
    if final_exit != 0:
        return {**result, "identical": None, "reason": f"the resumed run failed; log {killed}.log"}
    reference, resumed = load_checkpoint(whole / LAST_NAME), load_checkpoint(killed / LAST_NAME)
    model_diff = differing_tensors(reference["model"], resumed["model"], "model")
    optimizer_diff = differing_tensors(reference["optimizer"], resumed["optimizer"], "optimizer")
    return {**result, "final_steps": [int(reference["step"]), int(resumed["step"])],
            "model_tensors": len(reference["model"]), "identical": not model_diff,
            "model_tensors_differing": model_diff, "optimizer_identical": not optimizer_diff,
            "optimizer_entries_differing": optimizer_diff[:20]}
