"""Self-supervised fine-tuning with the Every Frame Counts losses (train.mode: selfsup).

Each step takes ``train.batch_size`` unlabelled video pairs (data/video_pairs.py), runs them in
both directions in one batch, and adds ``selfsup.labelled_batch_size`` synthetic labelled pairs
with the supervised losses:
    L = [Lseg + lambda Lf + mu Locc]_labelled + Lpm + lambda_cons Lcons + lambda_occ Locc + lambda_sm Lsm
(EFC eq. 9; the bracket is eq. 8 plus the supervised flow terms), plus, when its weights are set,
a teacher's distillation on the unlabelled pairs (losses/teacher.py): DIS-medium flow and the
classical mask (data/teacher.py), the step's own flow after the runtime refinement
(data/refinement_teacher.py). The per-block occlusion heads (models/efc_occlusion_heads.py) live beside
the network and are checkpointed with it, never exported. No labels means no validation:
``last.pt`` every ``eval_every`` steps (atomic, resumable), and the final network goes to
``run_dir/selfsup.safetensors``. SIGINT/SIGTERM finish the step, write ``last.pt`` and return.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path

import torch
from torch import nn

from jointperception.config import ExperimentConfig, SelfSupConfig
from jointperception.data.datasets import SyntheticPairDataset
from jointperception.data.paths import shared_data_root
from jointperception.data.refinement_teacher import refined_flow_targets
from jointperception.data.video_pairs import (
    FrameSequence,
    VideoPairDataset,
    bag_sequence,
    drop_held_out,
    image_sequences,
    video_sequence,
)
from jointperception.errors import ConfigError, DataFormatError
from jointperception.losses.supervised import joint_loss
from jointperception.losses.teacher import teacher_loss
from jointperception.losses.unsupervised import EfcWeights, efc_unlabelled_loss
from jointperception.models.efc_occlusion_heads import EfcOcclusionHeads
from jointperception.models.normalize import normalize_images
from jointperception.models.weights import initial_model, save_weights
from jointperception.train.checkpoint import (
    LAST_NAME,
    load_checkpoint,
    restore_rng_state,
    rng_state,
    save_checkpoint,
)
from jointperception.train.interrupt import stop_on_signals
from jointperception.train.metrics_log import MetricsLog
from jointperception.train.run_start import checkpoint_to_resume, seed_everything
from jointperception.train.schedules import get_lr
from jointperception.train.trainer import TrainResult, freeze_batchnorm_statistics, set_trainable_branches

LOG = logging.getLogger(__name__)
WEIGHTS_NAME = "selfsup.safetensors"


def data_root(sc: SelfSupConfig) -> Path:
    """selfsup.data_root, or shared_data_root(); DataFormatError (one line) when it is missing."""
    root = Path(sc.data_root) if sc.data_root else shared_data_root()
    if not root.is_dir():
        raise DataFormatError(f"{root}: unlabelled data folder not found (set selfsup.data_root or JOINTPERCEPTION_DATA)")
    return root


def load_sequences(sc: SelfSupConfig) -> list[FrameSequence]:
    """Every configured image folder / video / bag, minus the hold-out sequences."""
    if not (sc.images or sc.videos or sc.bags):
        raise ConfigError("selfsup: list at least one of images, videos, bags")
    root = data_root(sc)
    size = (sc.frame_width, sc.frame_height)
    sequences = [s for pattern in sc.images for s in image_sequences(str(root / pattern), size)]
    sequences += [video_sequence(root / video, size) for video in sc.videos]
    sequences += [bag_sequence(root / bag, sc.bag_topic, size) for bag in sc.bags]
    return drop_held_out(sequences, sc.holdout)


def efc_weights(sc: SelfSupConfig) -> EfcWeights:
    return EfcWeights(sc.consistency_weight, sc.occlusion_weight, sc.smoothness_weight, sc.occlusion_estimation,
                      sc.temporal_consistency, sc.segmentation_mask)


def teacher_batch(sc: SelfSupConfig, batch: dict[str, torch.Tensor], first: torch.Tensor, second: torch.Tensor,
                  outputs: dict) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Teacher flow (2B, 2, h, w), valid (2B, 1, h, w) and mask (2B, 1, h, w) in the order of ``first``
    (image1 -> image2, then image2 -> image1); None for a target whose weight is 0."""
    def both_directions(key: str) -> torch.Tensor:  # the dataset's classical targets
        return torch.cat([batch[f"teacher_{key}1"], batch[f"teacher_{key}2"]])

    flow = valid = mask = None
    if sc.teacher_flow_weight > 0:
        if sc.teacher_flow_source == "refined":
            flow, valid = refined_flow_targets(first, second, outputs["flow"])
        else:
            flow, valid = both_directions("flow"), both_directions("valid")
    if sc.teacher_mask_weight > 0:
        mask = both_directions("mask")
    return flow, valid, mask


def _batch(dataset: torch.utils.data.Dataset, step: int, size: int) -> dict[str, torch.Tensor]:
    """Items step * size ... (step + 1) * size - 1 (modulo the dataset), stacked."""
    items = [dataset[(step * size + k) % len(dataset)] for k in range(size)]
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


def train_selfsup(cfg: ExperimentConfig, run_dir: str | Path, *, resume: str | Path | None = None,
                  command: str = "") -> TrainResult:
    """Fine-tune ``cfg.selfsup.init_from`` on unlabelled video into ``run_dir`` (CPU)."""
    tc, sc, run_dir = cfg.train, cfg.selfsup, Path(run_dir)
    seed_everything(tc.seed)
    resume_path = checkpoint_to_resume(run_dir, resume)
    # a resumed run restores its own weights below, so it never reads init_from
    model = initial_model("" if resume_path else sc.init_from, cfg.model, "selfsup.init_from")
    trainable = set_trainable_branches(model, sc.train_branches)  # train mode; a frozen branch's modules in eval
    if sc.freeze_batchnorm_stats:
        freeze_batchnorm_statistics(model)
    heads = EfcOcclusionHeads.for_model(model).train()
    parameters = [*trainable, *heads.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=tc.lr, weight_decay=tc.weight_decay)
    step, elapsed_before = 0, 0.0
    if resume_path is not None:
        checkpoint = load_checkpoint(resume_path)
        if checkpoint["model_args"] != dataclasses.asdict(cfg.model):
            raise ConfigError(f"{resume_path}: model {checkpoint['model_args']} differs from the config's")
        model.load_state_dict(checkpoint["model"])
        heads.load_state_dict(checkpoint["heads"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        restore_rng_state(checkpoint["rng"])
        step, elapsed_before = int(checkpoint["step"]), float(checkpoint["elapsed_s"])
        LOG.info("resumed %s at step %d", resume_path, step)
    if step >= tc.max_steps and (run_dir / WEIGHTS_NAME).exists():  # finished: keep its weights and metadata
        LOG.info("%s: already trained to step %d", run_dir, step)
        return TrainResult(run_dir, step, None, math.nan, {}, run_dir / WEIGHTS_NAME)
    sequences = load_sequences(sc)
    pairs = VideoPairDataset(sequences, tc.max_steps * tc.batch_size, tc.seed, cfg.data.height, cfg.data.width,
                             sc.max_dt, teacher=sc.uses_classical_targets, prealign=sc.prealign)
    labelled = SyntheticPairDataset.from_config(cfg.data) if sc.labelled_batch_size else None
    weights = efc_weights(sc)
    log = MetricsLog(run_dir, keep_until_step=step if resume_path else None)
    session_start, sums, received = time.perf_counter(), {}, 0

    def checkpoint_now() -> None:
        save_checkpoint(run_dir / LAST_NAME, {
            "model": model.state_dict(), "heads": heads.state_dict(), "model_args": dataclasses.asdict(cfg.model),
            "config": cfg.to_dict(), "optimizer": optimizer.state_dict(), "step": step, "rng": rng_state(),
            "elapsed_s": elapsed_before + time.perf_counter() - session_start,
        })

    with stop_on_signals() as stop:
        while step < tc.max_steps:
            lr = get_lr(step, peak_lr=tc.lr, min_lr=tc.min_lr, warmup_steps=tc.warmup_steps, decay_steps=tc.max_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = _batch(pairs, step, tc.batch_size)
            first = torch.cat([batch["image1"], batch["image2"]])  # both directions: (2B, 3, h, w) uint8
            second = torch.cat([batch["image2"], batch["image1"]])
            outputs = model(normalize_images(first), normalize_images(second))
            occlusions = heads(outputs["decoder_features"]) if weights.use_occlusion else None
            loss, terms = efc_unlabelled_loss(outputs, occlusions, first.float() / 255.0, weights)
            if sc.uses_teacher:
                distilled, teacher_terms = teacher_loss(outputs, *teacher_batch(sc, batch, first, second, outputs),
                                                        sc.teacher_flow_weight, sc.teacher_mask_weight)
                loss = loss + distilled
                terms |= teacher_terms
            if labelled is not None:
                synthetic = _batch(labelled, step, sc.labelled_batch_size)
                supervised_outputs = model(normalize_images(synthetic["image1"]), normalize_images(synthetic["image2"]))
                supervised, supervised_terms = joint_loss(supervised_outputs, synthetic, tc.flow_weight,
                                                          tc.occlusion_weight)
                loss = loss + supervised  # eq. 9: Lseg (eq. 8) and the flow labels of labelled pairs
                terms |= {f"labelled_{key}": value for key, value in supervised_terms.items()}
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"training diverged: loss {loss.item()} at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            terms["grad_norm"] = float(nn.utils.clip_grad_norm_(parameters, tc.grad_clip))
            optimizer.step()
            step += 1
            terms["loss"] = loss.item()
            for key, value in terms.items():
                sums[key] = sums.get(key, 0.0) + value
            if step % tc.log_every == 0:
                log.write(kind="train", step=step, lr=lr, **{k: v / tc.log_every for k, v in sums.items()})
                sums = {}
            if step % tc.eval_every == 0 or step == tc.max_steps:
                checkpoint_now()
            received = stop.signum
            if received:
                break
    if received:
        LOG.warning("signal %d: stopping at step %d", received, step)
        checkpoint_now()
        return TrainResult(run_dir, step, received, math.nan, {}, None)
    metadata = {"command": command, "seed": tc.seed, "final_step": step, "init_from": sc.init_from,
                "wall_time_s": round(elapsed_before + time.perf_counter() - session_start, 1), "config": cfg.to_dict()}
    weights_path = save_weights(run_dir / WEIGHTS_NAME, model.eval(), cfg.model, metadata)
    return TrainResult(run_dir, step, None, math.nan, {}, weights_path)
