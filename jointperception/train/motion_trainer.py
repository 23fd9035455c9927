"""MotionLayerNet training with the EM loss (train.mode: motion_layers), explicit top to bottom.

Data: exact synthetic flow of ``data.train_samples`` pairs plus the flow the joint model predicts
for the first ``motion.predicted_flow_samples`` of them and, without labels, for
``motion.video_flow_samples`` pairs of unlabelled real video (``data/video_flows``), all cached in
the run folder (``flow_train.pt``, ``flow_val.pt``, ``flow_video.pt``). Each batch draws from the
union, adds a random global quadratic flow (the EM loss is invariant to it), and minimises em_loss
(θ fitted in closed form, detached). Validation: best-matching layer J on GT and predicted val flow; score = 1 − mean J.
Writes metrics.jsonl, last.pt / best.pt (atomic, exact resume) and best.safetensors.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from jointperception.config import ExperimentConfig
from jointperception.errors import ConfigError
from jointperception.eval.layer_metrics import foreground_j, matched_layer_iou
from jointperception.losses.motion_em import em_loss, random_quadratic_flow
from jointperception.models import build_motion_model
from jointperception.models.motionnet import layers_from_logits
from jointperception.models.weights import save_weights
from jointperception.train.checkpoint import (
    BEST_NAME,
    LAST_NAME,
    TrainProgress,
    load_checkpoint,
    restore_rng_state,
    rng_state,
    save_checkpoint,
)
from jointperception.train.flow_samples import FlowSamples, load_or_build_flow_samples
from jointperception.train.interrupt import stop_on_signals
from jointperception.train.metrics_log import MetricsLog
from jointperception.train.run_start import checkpoint_to_resume, seed_everything
from jointperception.train.schedules import get_lr
from jointperception.train.trainer import WEIGHTS_NAME, TrainResult

LOG = logging.getLogger(__name__)
STEP_STREAM = 0x4D4C  # second seed word of the per-step batch generator (resume-exact sampling)


@torch.no_grad()
def evaluate_motion_layers(model: nn.Module, flow: torch.Tensor, layers: torch.Tensor, batch_size: int = 16
                           ) -> dict[str, float]:
    """Mean best-matching layer J and foreground J of ``model`` on flow (N, 2, H, W), GT layers (N, H, W)."""
    was_training = model.training
    model.eval()
    layer_j, fg_j = [], []
    for start in range(0, flow.shape[0], batch_size):
        predicted = layers_from_logits(model(flow[start:start + batch_size])).numpy()
        for pred, gt in zip(predicted, layers[start:start + batch_size].numpy()):
            layer_j.append(matched_layer_iou(pred, gt))
            fg_j.append(foreground_j(pred, gt > 0))
    model.train(was_training)
    return {"layer_j": float(np.mean(layer_j)), "fg_j": float(np.mean(fg_j))}


def _validate(model: nn.Module, val: FlowSamples) -> dict[str, float]:
    metrics = {f"gt_{k}": v for k, v in evaluate_motion_layers(model, val.gt_flow, val.layers).items()}
    if len(val.predicted_flow):
        predicted = evaluate_motion_layers(model, val.predicted_flow, val.layers[: len(val.predicted_flow)])
        metrics.update({f"pred_{k}": v for k, v in predicted.items()})
    layer_js = [v for k, v in metrics.items() if k.endswith("layer_j")]
    metrics["score"] = 1.0 - float(np.mean(layer_js))  # lower is better
    return metrics


def _batch(pool: torch.Tensor, cfg: ExperimentConfig, step: int) -> torch.Tensor:
    """Training batch (B, 2, H, W) of ``step``: random pool items + random global quadratic flow."""
    generator = torch.Generator().manual_seed(cfg.train.seed * 1_000_003 + step * 31 + STEP_STREAM)
    index = torch.randint(pool.shape[0], (cfg.train.batch_size,), generator=generator)
    flow = pool[index]
    return flow + random_quadratic_flow(flow.shape[0], flow.shape[2], flow.shape[3], generator, cfg.motion.augment_scale)


def _checkpoint(model: nn.Module, optimizer: torch.optim.Optimizer, cfg: ExperimentConfig, progress: TrainProgress) -> dict:
    return {"model": model.state_dict(), "model_args": cfg.to_dict()["motion"], "config": cfg.to_dict(),
            "optimizer": optimizer.state_dict(), "step": progress.step, "rng": rng_state(),
            "best_score": progress.best_score, "elapsed_s": progress.elapsed_s, "metrics": dict(progress.metrics)}


def train_motion_layers(cfg: ExperimentConfig, run_dir: str | Path, *, resume: str | Path | None = None,
                        command: str = "") -> TrainResult:
    """Train MotionLayerNet into ``run_dir`` on CPU; ``resume``: a checkpoint or "auto" (run_dir/last.pt)."""
    run_dir, tc, mc = Path(run_dir), cfg.train, cfg.motion
    seed_everything(tc.seed)
    model = build_motion_model(mc)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    progress = TrainProgress()
    resume_path = checkpoint_to_resume(run_dir, resume)
    if resume_path is not None:
        checkpoint = load_checkpoint(resume_path)
        if checkpoint["model_args"] != cfg.to_dict()["motion"]:
            raise ConfigError(f"{resume_path}: motion config {checkpoint['model_args']} differs from the config's")
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        restore_rng_state(checkpoint["rng"])
        progress = TrainProgress(int(checkpoint["step"]), float(checkpoint["best_score"]),
                                 float(checkpoint["elapsed_s"]), dict(checkpoint["metrics"]))
    joint_model = None if mc.joint_model == "bundled" else mc.joint_model
    train_set = load_or_build_flow_samples(run_dir / "flow_train.pt", cfg.data, "train", cfg.data.train_samples,
                                           mc.predicted_flow_samples, joint_model)
    val_set = load_or_build_flow_samples(run_dir / "flow_val.pt", cfg.data, "val", cfg.data.val_samples,
                                         cfg.data.val_samples if mc.predicted_flow_samples else 0, joint_model)
    pool = torch.cat([train_set.gt_flow, train_set.predicted_flow])
    log = MetricsLog(run_dir, keep_until_step=progress.step if resume_path else None)
    budget_s = mc.max_train_minutes * 60.0 or math.inf
    last_eval, received, sums, count = -1, 0, {}, 0
    session_start, elapsed_before = time.perf_counter(), progress.elapsed_s

    def validate_and_save() -> None:
        nonlocal last_eval
        progress.metrics = _validate(model, val_set)
        progress.best_score = min(progress.best_score, progress.metrics["score"])
        last_eval = progress.step
        log.write(kind="val", step=progress.step, **progress.metrics, best_score=progress.best_score)
        LOG.info("step %d validation: %s", progress.step, ", ".join(f"{k} {v:.4f}" for k, v in progress.metrics.items()))
        checkpoint = _checkpoint(model, optimizer, cfg, progress)
        save_checkpoint(run_dir / LAST_NAME, checkpoint)
        if progress.best_score == progress.metrics["score"]:
            save_checkpoint(run_dir / BEST_NAME, checkpoint)

    model.train()
    with stop_on_signals() as stop:
        while progress.step < tc.max_steps and progress.elapsed_s < budget_s:
            # lr: linear warm-up then cosine decay to min_lr at max_steps
            lr = get_lr(progress.step, peak_lr=tc.lr, min_lr=tc.min_lr, warmup_steps=tc.warmup_steps,
                        decay_steps=tc.max_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            flow = _batch(pool, cfg, progress.step)
            # L = Σ_i Σ_k g_ik |f(i) − f_θk(i)|_1 − β Σ_i H(g_i) + γ H(ḡ), θ fitted to detached g
            loss, terms = em_loss(model(flow), flow, mc.motion_model, mc.entropy_weight, mc.irls_iterations,
                                  mc.layer_mass_weight)
            if not math.isfinite(terms["loss"]):
                raise FloatingPointError(f"training diverged: loss {terms['loss']} at step {progress.step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            terms["grad_norm"] = float(nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip))
            optimizer.step()
            progress.step += 1
            progress.elapsed_s = elapsed_before + time.perf_counter() - session_start
            count += 1
            for key, value in terms.items():
                sums[key] = sums.get(key, 0.0) + value
            if progress.step % tc.log_every == 0:
                log.write(kind="train", step=progress.step, lr=lr, elapsed_s=round(progress.elapsed_s, 1),
                          **{key: value / count for key, value in sums.items()})
                sums, count = {}, 0
            if progress.step % tc.eval_every == 0:
                validate_and_save()
            if stop.signum:
                received = stop.signum
                break
    if received:
        LOG.warning("signal %d: stopping at step %d", received, progress.step)
        if last_eval != progress.step:
            save_checkpoint(run_dir / LAST_NAME, _checkpoint(model, optimizer, cfg, progress))
        return TrainResult(run_dir, progress.step, received, progress.best_score, progress.metrics, None)
    if last_eval != progress.step:
        validate_and_save()
    return TrainResult(run_dir, progress.step, None, progress.best_score, progress.metrics,
                       _export_best(run_dir, cfg, progress, command))


def _export_best(run_dir: Path, cfg: ExperimentConfig, progress: TrainProgress, command: str) -> Path:
    """Write the best checkpoint's MotionLayerNet to ``run_dir/best.safetensors`` with its metadata."""
    best = load_checkpoint(run_dir / BEST_NAME)
    model = build_motion_model(cfg.motion)
    model.load_state_dict(best["model"])
    metadata = {"command": command, "seed": cfg.train.seed, "wall_time_s": round(progress.elapsed_s, 1),
                "best_step": int(best["step"]), "final_step": progress.step, "best_metrics": best["metrics"],
                "final_metrics": progress.metrics, "config": cfg.to_dict()}
    return save_weights(run_dir / WEIGHTS_NAME, model, cfg.motion, metadata)
