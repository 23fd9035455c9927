"""The training loop, explicit top to bottom (SegFlow §4.1 iterative offline training, or joint).

Iterative mode trains one branch at a time (flow, segmentation, flow, ...): the other branch is
frozen — no gradients, no optimizer updates, and its modules in eval mode so its BatchNorm
running statistics do not drift while it still feeds fused features to the trained branch.
Validation every ``eval_every`` steps drives the phase switches, ``last.pt`` and ``best.pt``.
SIGINT/SIGTERM finish the current step, write ``last.pt`` and return (exit code 128 + signal);
so does a spent ``time_limit_s`` (exit code 0: the run continues with --resume auto).
With ``train.real_eval_every``, the real suites' figures (``eval.dev_suites``) join metrics.jsonl
as "real" lines beside the hours trained: the learning curve on real video.
Under torchrun each process trains on its own samples of every step (DDP); rank 0 writes files.
"""
from __future__ import annotations

import gc
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from jointperception.config import ExperimentConfig
from jointperception.data.paths import shared_data_root
from jointperception.errors import ConfigError
from jointperception.eval.dev_suites import dev_suite_scores
from jointperception.eval.synthetic_eval import evaluate_synthetic
from jointperception.losses.supervised import joint_loss
from jointperception.models import build_model
from jointperception.models.normalize import normalize_images
from jointperception.models.weights import initial_model, save_weights
from jointperception.train.checkpoint import (
    BEST_NAME,
    LAST_NAME,
    TrainProgress,
    load_checkpoint,
    make_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)
from jointperception.train.distributed import (
    DistributedContext,
    any_rank,
    average_metrics,
    init_distributed,
    shutdown_distributed,
    wrap_for_phase,
)
from jointperception.train.interrupt import stop_on_signals
from jointperception.train.loaders import make_loaders
from jointperception.train.metrics_log import MetricsLog
from jointperception.train.run_start import checkpoint_to_resume, seed_everything
from jointperception.train.schedules import (
    BranchSchedule,
    get_lr,
    phase_metric,
    selection_score,
)

LOG = logging.getLogger(__name__)
WEIGHTS_NAME = "best.safetensors"  # exported best model, loadable by models.weights.load_model


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    step: int  # optimizer steps done
    signal: int | None  # signal that interrupted the run; None when it completed
    best_score: float  # lowest selection_score seen (lower is better)
    metrics: dict[str, float]  # last validation metrics
    weights: Path | None  # exported best model (rank 0 of a completed run only)
    time_up: bool = False  # stopped by its time limit before max_steps (resumable)

    @property
    def exit_code(self) -> int:
        return 0 if self.signal is None else 128 + self.signal


def set_trainable_branches(model: nn.Module, branches: tuple[str, ...]) -> list[nn.Parameter]:
    """Only the parameters of ``branches`` require grad; returns them.

    Modules whose own parameters are all frozen (e.g. the frozen branch's BatchNorm layers) go to
    eval mode so their running statistics stay fixed; everything else is in train mode.
    Raises ValueError when a parameter belongs to no branch (it would never be trained).
    """
    owned = {id(p) for branch in ("segmentation", "flow") for p in model.branch_parameters(branch)}
    orphans = [name for name, p in model.named_parameters() if id(p) not in owned]
    if orphans:
        raise ValueError(f"parameters in no branch: {', '.join(orphans[:5])}")
    active = {id(p) for branch in branches for p in model.branch_parameters(branch)}
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) in active)
    model.train()
    for module in model.modules():
        own = list(module.parameters(recurse=False))
        if own and not any(p.requires_grad for p in own):
            module.training = False
    return [p for p in model.parameters() if p.requires_grad]


def freeze_batchnorm_statistics(model: nn.Module) -> None:
    """Put every BatchNorm layer of ``model`` (already in train mode) in eval mode: forward passes
    normalise with the running statistics and never update them, while the affine parameters keep
    training. Fine-tuning on another domain then keeps the statistics the weights were trained
    with. A later ``model.train()`` undoes it."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eval()


def resolve_device(name: str) -> torch.device:
    """"auto" -> CUDA when available, else CPU; "cuda" without a GPU raises ConfigError."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"device: must be cpu, cuda or auto, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda requested but no CUDA device is available")
    return torch.device(name)


def train(
    cfg: ExperimentConfig, run_dir: str | Path, *, device: str = "auto", resume: str | Path | None = None,
    command: str = "", time_limit_s: float | None = None,
) -> TrainResult:
    """Train ``cfg`` into ``run_dir`` (metrics.jsonl, last.pt, best.pt, best.safetensors).

    ``resume``: a checkpoint path, or "auto" for ``run_dir/last.pt`` when it exists.
    ``time_limit_s``: stop after this much wall time of this session (training and validation),
    with ``last.pt`` written, so that a fixed budget (e.g. a lent GPU) ends resumable.
    """
    device_type = resolve_device(device).type
    context = init_distributed(device_type)
    run_device = torch.device(f"cuda:{context.local_rank}") if device_type == "cuda" else torch.device("cpu")
    try:
        result = _train(cfg, Path(run_dir), run_device, resume, command, context, time_limit_s)
    except BaseException:
        shutdown_distributed(context, completed=False)
        raise
    shutdown_distributed(context, completed=True)
    return result


def _train(
    cfg: ExperimentConfig, run_dir: Path, device: torch.device, resume: str | Path | None, command: str,
    context: DistributedContext, time_limit_s: float | None,
) -> TrainResult:
    tc = cfg.train
    if cfg.data.val_samples < context.world_size:
        raise ConfigError(f"data.val_samples: need at least one per process ({context.world_size})")
    use_amp = tc.amp and device.type == "cuda"
    seed_everything(tc.seed)
    resume_path = checkpoint_to_resume(run_dir, resume)
    # a resumed run restores its own weights below, so it never reads init_from
    model = initial_model("" if resume_path else tc.init_from, cfg.model, "train.init_from").to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)
    schedule = BranchSchedule.from_config(tc)
    progress = TrainProgress()

    if resume_path is not None:
        schedule = restore_checkpoint(resume_path, cfg, model, optimizer, scaler, progress)
    train_loader, val_loader = make_loaders(cfg, context, progress.step, pin_memory=device.type == "cuda")
    log = MetricsLog(run_dir, enabled=context.is_main, keep_until_step=progress.step if resume_path else None)
    bar = tqdm(total=tc.max_steps, initial=progress.step, disable=not context.is_main or not sys.stderr.isatty())

    active = set_trainable_branches(model, schedule.branches)
    train_model = wrap_for_phase(model, context, device)
    batches = iter(train_loader)
    received, sums, interval_steps, last_eval = 0, {}, 0, -1
    session_start = interval_start = time.perf_counter()
    elapsed_before = progress.elapsed_s

    def validate_and_save() -> None:
        nonlocal last_eval
        phase, phase_round = schedule.phase, schedule.round
        _validate(model, val_loader, device, context, cfg, schedule, progress)
        last_eval = progress.step
        log.write(kind="val", step=progress.step, hours=progress.elapsed_s / 3600, phase=phase, round=phase_round,
                  **progress.metrics, best_score=progress.best_score)
        if context.is_main and tc.real_eval_every and progress.step % tc.real_eval_every == 0:
            log_real_suites()
        if context.is_main:
            checkpoint = make_checkpoint(model, optimizer, scaler, schedule, cfg, progress)
            save_checkpoint(run_dir / LAST_NAME, checkpoint)
            if progress.best_score == progress.metrics["score"]:
                save_checkpoint(run_dir / BEST_NAME, checkpoint)

    def log_real_suites() -> None:
        root = shared_data_root()
        if not root.is_dir():
            LOG.warning("train.real_eval_every: no real data at %s; the real-suite curve is skipped", root)
            return
        log.write(kind="real", step=progress.step, hours=progress.elapsed_s / 3600, **dev_suite_scores(model, root))

    if context.is_main and tc.real_eval_every and progress.step == 0:
        log_real_suites()  # the curve's first point: the network the run starts from
    time_up = False
    with stop_on_signals() as stop:
        while not schedule.done(progress.step):
            # lr: linear warm-up then cosine decay, restarted at every phase switch
            lr = get_lr(schedule.phase_step(progress.step), peak_lr=tc.lr, min_lr=tc.min_lr,
                        warmup_steps=tc.warmup_steps, decay_steps=schedule.decay_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = {key: value.to(device, non_blocking=True) for key, value in next(batches).items()}
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                outputs = train_model(normalize_images(batch["image1"]), normalize_images(batch["image2"]))
                # L = Ls + lambda * Lf + mu * Locc, restricted to the branches of this phase
                loss, terms = joint_loss(outputs, batch, tc.flow_weight, tc.occlusion_weight,
                                         branches=schedule.branches)
            if not use_amp and not math.isfinite(terms["loss"]):
                raise FloatingPointError(f"training diverged: loss {terms['loss']} at step {progress.step}")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            terms["grad_norm"] = float(nn.utils.clip_grad_norm_(active, tc.grad_clip))
            scaler.step(optimizer)
            scaler.update()
            progress.step += 1
            progress.elapsed_s = elapsed_before + time.perf_counter() - session_start
            bar.update(1)
            interval_steps += 1
            for key, value in terms.items():
                sums[key] = sums.get(key, 0.0) + value
            if progress.step % tc.log_every == 0:
                rate = interval_steps * tc.batch_size * context.world_size / (time.perf_counter() - interval_start)
                means = {key: value / interval_steps for key, value in sums.items()}
                log.write(kind="train", step=progress.step, phase=schedule.phase, round=schedule.round, lr=lr,
                          **means, samples_per_s=rate)
                bar.set_postfix(phase=schedule.phase, loss=f"{means['loss']:.3f}")
                sums, interval_steps, interval_start = {}, 0, time.perf_counter()

            if progress.step % tc.eval_every == 0 or progress.step >= tc.max_steps:
                eval_start, phase = time.perf_counter(), schedule.phase
                validate_and_save()
                if schedule.phase != phase and not schedule.done(progress.step):
                    if context.is_main:
                        LOG.info("step %d: %s phase -> %s (round %d)", progress.step, phase, schedule.phase,
                                 schedule.round)
                    log.write(kind="phase", step=progress.step, phase=schedule.phase, round=schedule.round)
                    train_model = None  # drop the old DDP wrapper and its gradient hooks first
                    gc.collect()
                    active = set_trainable_branches(model, schedule.branches)
                    train_model = wrap_for_phase(model, context, device)
                interval_start += time.perf_counter() - eval_start  # samples/s counts training time only

            received = any_rank(stop.signum, context, device)
            time_up = time_limit_s is not None and time.perf_counter() - session_start >= time_limit_s
            if received or time_up:
                break
    bar.close()
    del batches
    if received or (time_up and not schedule.done(progress.step)):
        if context.is_main:
            LOG.warning("%s: stopping at step %d", f"signal {received}" if received else "time limit", progress.step)
        if context.is_main and last_eval != progress.step:
            save_checkpoint(run_dir / LAST_NAME, make_checkpoint(model, optimizer, scaler, schedule, cfg, progress))
        return TrainResult(run_dir, progress.step, received or None, progress.best_score, progress.metrics, None,
                           time_up=not received)
    if last_eval != progress.step:  # e.g. resumed at the end of a run: best.pt must describe it
        validate_and_save()
    weights = _export_best(run_dir, cfg, progress, command) if context.is_main else None
    return TrainResult(run_dir, progress.step, None, progress.best_score, progress.metrics, weights)


def _validate(
    model: nn.Module, loader: torch.utils.data.DataLoader, device: torch.device, context: DistributedContext,
    cfg: ExperimentConfig, schedule: BranchSchedule, progress: TrainProgress,
) -> None:
    """Evaluate, average over ranks, feed the phase metric to the schedule, track the best score."""
    metrics = average_metrics(evaluate_synthetic(model, loader, device), context, device)
    metrics["score"] = selection_score(metrics, flow_scale=cfg.data.max_translation)
    schedule.report(progress.step, phase_metric(schedule.phase, metrics))
    progress.metrics = metrics
    progress.best_score = min(progress.best_score, metrics["score"])
    if context.is_main:
        LOG.info("step %d validation: %s", progress.step, ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))


def _export_best(run_dir: Path, cfg: ExperimentConfig, progress: TrainProgress, command: str) -> Path:
    """Write the best checkpoint's weights to ``run_dir/best.safetensors`` with a model card."""
    best = load_checkpoint(run_dir / BEST_NAME)
    model = build_model(cfg.model)
    model.load_state_dict(best["model"])
    metadata = {
        "command": command,
        "seed": cfg.train.seed,
        "wall_time_s": round(progress.elapsed_s, 1),
        "best_step": int(best["step"]),
        "final_step": progress.step,
        "best_metrics": best["metrics"],
        "final_metrics": progress.metrics,
        "config": cfg.to_dict(),
    }
    return save_weights(run_dir / WEIGHTS_NAME, model, cfg.model, metadata)
