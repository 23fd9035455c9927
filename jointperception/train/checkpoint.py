"""Trainer checkpoints: one ``torch.save`` dict, written atomically, loadable with weights_only.

A checkpoint holds only plain containers, numbers, strings and tensors, so
``torch.load(weights_only=True)`` reads it (no pickled classes):
    format "jointperception-checkpoint", version 1,
    model       state dict of the unwrapped JointNet
    model_args  ModelConfig as a dict (``models.build_model`` rebuilds the network from it)
    config      the whole ExperimentConfig as a dict
    optimizer, scaler   their state dicts
    step        optimizer steps done;  schedule  ``BranchSchedule.to_dict()``
    content_sha256  ``integrity.payload_sha256`` of the rest, checked at load
    rng         RNG states as tensors (``rng_state`` / ``restore_rng_state``)
    best_score, elapsed_s, metrics   trainer bookkeeping (``TrainProgress``)
The run directory keeps ``last.pt`` (latest) and ``best.pt`` (best validation score).
``make_checkpoint`` builds the dict from the training objects, ``restore_checkpoint`` loads it back.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from jointperception.config import TRAIN_ONLY_DATA_KEYS, DataConfig, ExperimentConfig
from jointperception.errors import ConfigError, ModelFileError
from jointperception.integrity import HASH_KEY, payload_sha256
from jointperception.models.torch_files import read_torch_file
from jointperception.train.schedules import BranchSchedule

CHECKPOINT_FORMAT = "jointperception-checkpoint"
CHECKPOINT_VERSION = 1
LAST_NAME = "last.pt"
BEST_NAME = "best.pt"
REQUIRED_KEYS = ("format", "version", "model", "model_args", "config", "step")
TMP_SUFFIX = ".tmp"  # a write in progress: ".<name>.<pid>.tmp" beside the checkpoint
LOG = logging.getLogger(__name__)


@dataclass
class TrainProgress:
    step: int = 0  # optimizer steps done
    best_score: float = math.inf  # lowest validation selection score so far
    elapsed_s: float = 0.0  # training wall time over all sessions of this run
    metrics: dict[str, float] = field(default_factory=dict)  # last validation metrics


def resume_checkpoint_path(run_dir: Path, resume: str | Path | None) -> Path | None:
    """The checkpoint a run resumes from: None -> none; "auto" -> ``run_dir/last.pt`` when it
    exists (else none: a fresh run); anything else -> that path (loading it reports a bad one)."""
    if resume is None:
        return None
    if str(resume) == "auto":
        last = run_dir / LAST_NAME
        return last if last.exists() else None
    return Path(resume)


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> None:
    """Write ``checkpoint`` to ``path`` atomically: temp file in the same folder + ``os.replace``.

    A crash mid-save leaves any previous file at ``path`` untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **checkpoint}
    try:
        torch.save({**payload, HASH_KEY: payload_sha256(payload)}, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint``; ModelFileError names a missing, corrupt or
    refused file (``models.torch_files.read_torch_file``)."""
    path = Path(path)
    checkpoint = read_torch_file(path, map_location)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ModelFileError(f"{path}: not a jointperception trainer checkpoint")
    if checkpoint.get("version") != CHECKPOINT_VERSION:
        raise ModelFileError(f"{path}: checkpoint version {checkpoint.get('version')!r}, expected {CHECKPOINT_VERSION}")
    missing = [key for key in REQUIRED_KEYS if key not in checkpoint]
    if missing:
        raise ModelFileError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return checkpoint


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete the temporary files (``.last.pt.<pid>.tmp``) of checkpoint writes whose process is gone
    (killed mid-save) -> the paths removed. A live writer's file is left alone."""
    removed = []
    for tmp in run_dir.glob(f".*.*{TMP_SUFFIX}"):
        pid = tmp.name[: -len(TMP_SUFFIX)].rsplit(".", 1)[-1]
        if pid.isdigit() and not _process_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    if removed:
        LOG.info("%s: removed %d stale temporary file(s) of an interrupted checkpoint write", run_dir, len(removed))
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA when initialised) RNG states as tensors and numbers."""
    version, mt_state, gauss_next = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "state": torch.tensor(mt_state, dtype=torch.int64), "gauss_next": gauss_next},
        "numpy": {
            "name": np_name,
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of ``rng_state``."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss_next"]))
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["name"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def make_checkpoint(
    model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, schedule: BranchSchedule,
    cfg: ExperimentConfig, progress: TrainProgress,
) -> dict[str, Any]:
    """Everything a resumed run needs, as weights_only-loadable containers."""
    return {
        "model": model.state_dict(),
        "model_args": dataclasses.asdict(cfg.model),
        "config": cfg.to_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "step": progress.step,
        "schedule": schedule.to_dict(),
        "rng": rng_state(),
        "best_score": progress.best_score,
        "elapsed_s": progress.elapsed_s,
        "metrics": dict(progress.metrics),
    }


def validation_split_changes(saved: dict[str, Any], data: DataConfig) -> list[str]:
    """Keys of ``data`` (the resumed config) that define the validation split and differ from
    ``saved`` (a checkpoint's ``config["data"]``; keys it lacks take their defaults)."""
    before = {**dataclasses.asdict(DataConfig()), **saved}
    after = dataclasses.asdict(data)
    return [key for key in after if key not in TRAIN_ONLY_DATA_KEYS and before.get(key) != after[key]]


def restore_checkpoint(
    path: Path, cfg: ExperimentConfig, model: nn.Module, optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler, progress: TrainProgress,
) -> BranchSchedule:
    """Load ``path`` into the model/optimizer/scaler/progress; returns the schedule to continue."""
    checkpoint = load_checkpoint(path)
    if checkpoint["model_args"] != dataclasses.asdict(cfg.model):
        expected = dataclasses.asdict(cfg.model)
        raise ConfigError(f"{path}: model {checkpoint['model_args']} differs from the config's {expected}")
    schedule = BranchSchedule.from_dict(checkpoint["schedule"])
    if schedule.mode != cfg.train.mode:
        raise ConfigError(f"{path}: train.mode {schedule.mode!r} in the checkpoint, {cfg.train.mode!r} in the config")
    try:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
    except (RuntimeError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[-1].strip()
        raise ModelFileError(f"{path}: checkpoint does not match the current network ({reason})") from None
    scaler.load_state_dict(checkpoint["scaler"])
    restore_rng_state(checkpoint["rng"])
    progress.step = int(checkpoint["step"])
    progress.best_score = float(checkpoint["best_score"])
    changed = validation_split_changes(checkpoint["config"].get("data", {}), cfg.data)
    if changed:  # scores on another validation split do not compare: the next validation sets the best
        LOG.warning("%s: the validation split changed since this checkpoint (data.%s); the best score restarts "
                    "and best.pt is replaced at the next validation", path, ", data.".join(changed))
        progress.best_score = math.inf
    progress.elapsed_s = float(checkpoint["elapsed_s"])
    progress.metrics = dict(checkpoint["metrics"])
    LOG.info("resumed %s at step %d (%s phase)", path, progress.step, schedule.phase)
    t = cfg.train  # the config may extend the run (e.g. a larger max_steps)
    return dataclasses.replace(schedule, max_steps=t.max_steps, patience=t.patience, min_phase_steps=t.min_phase_steps)
