"""How every trainer (supervised, self-supervised, motion layers) starts a run: the seeds, and the
checkpoint it resumes from. The rest of the skeleton they share lives beside this: atomic
checkpoints and RNG state (train/checkpoint.py), the metrics log (train/metrics_log.py), signal
handling (train/interrupt.py) and the learning-rate schedule (train/schedules.py)."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from jointperception.errors import ConfigError
from jointperception.train.checkpoint import LAST_NAME, remove_stale_temporaries, resume_checkpoint_path


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def checkpoint_to_resume(run_dir: Path, resume: str | Path | None) -> Path | None:
    """The checkpoint the run resumes from (``resume_checkpoint_path``), or None for a fresh run, which
    refuses a ``run_dir`` that already holds ``last.pt`` rather than overwrite it (ConfigError).
    Temporaries of a checkpoint write killed in an earlier session are removed first."""
    remove_stale_temporaries(run_dir)
    path = resume_checkpoint_path(run_dir, resume)
    if path is None and (run_dir / LAST_NAME).exists():
        raise ConfigError(f"{run_dir}: already holds {LAST_NAME}; pass --resume auto or another --out")
    return path
