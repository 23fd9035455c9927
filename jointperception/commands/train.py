"""``jointperception train``: train JointNet on synthetic pairs (iterative SegFlow schedule or joint)."""
from __future__ import annotations

import argparse
import dataclasses
import logging
import shlex
import sys
from pathlib import Path

from jointperception.config import ExperimentConfig, load_config
from jointperception.errors import InputError
from jointperception.train.motion_trainer import train_motion_layers
from jointperception.train.selfsup_trainer import train_selfsup
from jointperception.train.trainer import train

HELP = "train the joint network on synthetic pairs (writes metrics.jsonl, last.pt, best.pt, best.safetensors)"
DEFAULT_CONFIG = Path("config/train_synthetic.yaml")
LOG = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="experiment YAML (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=None, help="run folder (default: runs/<config name>)")
    parser.add_argument("--resume", default=None, metavar="PATH|auto",
                        help="continue from a checkpoint; auto = OUT/last.pt when it exists")
    parser.add_argument("--max-steps", type=int, default=None, help="override train.max_steps")
    parser.add_argument("--seed", type=int, default=None, help="override train.seed (e.g. to measure seed spread)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: %(default)s")
    parser.add_argument("--workers", type=int, default=None,
                        help="override data.num_workers (data-loader processes; e.g. 12 on a 16-core GPU machine)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="stop after this many minutes with last.pt written (resume later with --resume auto)")


def apply_overrides(cfg: ExperimentConfig, max_steps: int | None = None, seed: int | None = None,
                    workers: int | None = None) -> ExperimentConfig:
    """A new validated config with the command-line overrides (the loaded one is never mutated)."""
    overrides = {key: value for key, value in (("max_steps", max_steps), ("seed", seed)) if value is not None}
    if not overrides and workers is None:
        return cfg
    new = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **overrides))
    if workers is not None:
        new = dataclasses.replace(new, data=dataclasses.replace(new.data, num_workers=workers))
    new.validate()
    return new


def run(args: argparse.Namespace) -> int:
    if args.minutes is not None and not args.minutes > 0:
        raise InputError(f"--minutes must be > 0, got {args.minutes}")
    cfg = apply_overrides(load_config(args.config), args.max_steps, args.seed, args.workers)
    if args.minutes is not None and cfg.train.mode in ("selfsup", "motion_layers"):
        raise InputError(f"--minutes: train.mode {cfg.train.mode} has no time limit; it applies to joint and iterative runs")
    run_dir = args.out if args.out is not None else Path("runs") / args.config.stem
    command = shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
    if cfg.train.mode == "selfsup":  # Every Frame Counts fine-tuning on unlabelled video (CPU)
        result = train_selfsup(cfg, run_dir, resume=args.resume, command=command)
    elif cfg.train.mode == "motion_layers":  # MotionLayerNet on flow with the EM loss (CPU)
        result = train_motion_layers(cfg, run_dir, resume=args.resume, command=command)
    else:
        time_limit = None if args.minutes is None else 60.0 * args.minutes
        result = train(cfg, run_dir, device=args.device, resume=args.resume, command=command, time_limit_s=time_limit)
    if result.signal is not None or result.time_up:
        LOG.warning("interrupted at step %d; continue with --resume auto --out %s", result.step, run_dir)
    elif result.weights is not None and cfg.train.mode in ("selfsup", "motion_layers"):
        LOG.info("done: %d steps, model %s", result.step, result.weights)
    elif result.weights is not None:
        LOG.info("done: %d steps, best score %.4f, model %s", result.step, result.best_score, result.weights)
    return result.exit_code
