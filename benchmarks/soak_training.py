"""The soak bench's training phase (benchmarks/soak.py): a short ``train`` run of
config/train_smoke.yaml (``--max-steps`` STEPS) done once uninterrupted and once killed with SIGKILL
at ``kills`` random moments (seeded; each a uniform fraction of the uninterrupted wall time), each
time started again with ``--resume auto``, then run to the end. Every tensor of the two final
``last.pt`` model states (and of the optimizer states) is compared bit for bit."""
from __future__ import annotations

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
KILL_FRACTIONS = (0.1, 0.45)  # a kill comes this fraction of the uninterrupted run's wall time after a start


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
    rng = random.Random(seed)
    sessions = []
    for _ in range(kills):
        delay = rng.uniform(*KILL_FRACTIONS) * whole_s
        process = start_training(killed, max_steps)
        try:
            exit_code = process.wait(delay)  # finished before its kill came
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            exit_code = process.wait()
        sessions.append({"kill_after_s": round(delay, 3), "exit_code": exit_code,
                         "killed": exit_code == -signal.SIGKILL, "step_in_last_pt": checkpoint_step(killed),
                         "stale_temporaries": sorted(p.name for p in killed.glob(f".*{TMP_SUFFIX}"))})
    final_exit = start_training(killed, max_steps).wait()
    sessions.append({"kill_after_s": None, "exit_code": final_exit, "killed": False,
                     "step_in_last_pt": checkpoint_step(killed),
                     "stale_temporaries": sorted(p.name for p in killed.glob(f".*{TMP_SUFFIX}"))})
    result: dict[str, object] = {
        "command": " ".join(train_command(Path("RUN"), max_steps)[1:]), "max_steps": max_steps, "seed": seed,
        "uninterrupted_s": round(whole_s, 2), "uninterrupted_exit_code": whole_exit, "sessions": sessions,
        "kills_landed": sum(s["killed"] for s in sessions),
    }
    if whole_exit != 0 or final_exit != 0:
        return {**result, "identical": None, "reason": f"a run failed; logs {whole}.log, {killed}.log"}
    reference, resumed = load_checkpoint(whole / LAST_NAME), load_checkpoint(killed / LAST_NAME)
    model_diff = differing_tensors(reference["model"], resumed["model"], "model")
    optimizer_diff = differing_tensors(reference["optimizer"], resumed["optimizer"], "optimizer")
    return {**result, "final_steps": [int(reference["step"]), int(resumed["step"])],
            "model_tensors": len(reference["model"]), "identical": not model_diff,
            "model_tensors_differing": model_diff, "optimizer_identical": not optimizer_diff,
            "optimizer_entries_differing": optimizer_diff[:20]}
