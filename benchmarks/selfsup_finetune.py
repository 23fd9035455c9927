"""Every Frame Counts fine-tuning of the bundled model on unlabelled DAVIS + Sintel frames:
before/after on held-out sequences, and an EFC Table-2-style ablation at one step budget.

Rows (all start from models/jointnet_tiny.safetensors, same data, seed, steps, and the same
labelled synthetic pairs mixed into every step):
  UL      photometric (SSIM + L1) + edge-aware smoothness, both directions, scales 1-8
  UL+OE   + per-block occlusion heads, Locc and occlusion-weighted photometric loss
  UL+TC   + temporal consistency of encoder features (no occlusion masking)
  full    UL + OE + TC + the segmentation error mask O_error (eq. 5): config/train_selfsup.yaml
  full+teacher  full + distillation of the classical teacher (DIS-medium flow where forward-backward
          consistent, classical motion mask; data/teacher.py): config/train_selfsup_teacher.yaml,
          its own step budget (train.max_steps) and learning rate
  full+teacher+frozen-bn  the same with the BatchNorm running statistics kept at the supervised
          model's (selfsup.freeze_batchnorm_stats: the affine parameters still train)
  full+teacher+frozen-bn+2x  the same for twice the teacher config's steps (its cosine schedule
          stretched to the longer run)
  full+teacher+frozen-bn+seed1  "full+teacher+frozen-bn" with train.seed 1 instead of 0 (other
          pairs, crops and synthetic samples; the same start): how far a seed alone moves the figures
Held out (never trained on): DAVIS blackswan, cows, kite-surf; Sintel market_5 (clean and final).
Scores use the runtime pipeline at 320x240, as benchmarks/eval_bundled.json.

    python benchmarks/selfsup_finetune.py --steps 200 --full-steps 2500 --out benchmarks/selfsup_finetune.json
    python benchmarks/selfsup_finetune.py --rows --full-steps 0 --teacher-rows full+teacher \
        --runs runs/selfsup_photo --out benchmarks/selfsup_finetune_photo.json   # one recipe, current base
    python benchmarks/selfsup_finetune.py --rows --full-steps 0 --teacher-rows \
        --recipes config/train_selfsup_refined_teacher.yaml --runs runs/recipes --out JSON   # configs as written
    (add --no-refine-flow to score the fine-tuned rows without the runtime refinement they were taught)

Then the full recipe runs once more with the larger ``--full-steps`` budget (row "full_run"), and
the teacher recipe four times (TEACHER_ROWS). "before" is the bundled supervised-only model; a row
counts as better when it beats it on both held-out figures (lower mean Sintel EPE and higher DAVIS
J). A row's model can be bundled beside it with benchmarks/bundle_model.py
(models/jointnet_tiny_selfsup.safetensors). Runs resume from runs/selfsup_ablation/<row>/last.pt,
so a rerun only re-evaluates finished rows; "train s" is the run's recorded training wall time.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
from pathlib import Path

import torch

from jointperception.config import ExperimentConfig, load_config
from jointperception.data.paths import shared_data_root
from jointperception.eval.held_out import HELD_OUT_DAVIS, HELD_OUT_SINTEL, held_out_scores, is_better
from jointperception.models.weights import DEFAULT_MODEL_PATH
from jointperception.train.checkpoint import LAST_NAME, load_checkpoint
from jointperception.train.selfsup_trainer import WEIGHTS_NAME, train_selfsup

ROWS = {
    "UL": {"occlusion_estimation": False, "temporal_consistency": False, "segmentation_mask": False},
    "UL+OE": {"occlusion_estimation": True, "temporal_consistency": False, "segmentation_mask": False},
    "UL+TC": {"occlusion_estimation": False, "temporal_consistency": True, "segmentation_mask": False},
    "full": {"occlusion_estimation": True, "temporal_consistency": True, "segmentation_mask": True},
}
# row -> (selfsup flags, multiple of the teacher config's train.max_steps, train.seed)
TEACHER_ROWS = {
    "full+teacher": ({}, 1, 0),
    "full+teacher+frozen-bn": ({"freeze_batchnorm_stats": True}, 1, 0),
    "full+teacher+frozen-bn+2x": ({"freeze_batchnorm_stats": True}, 2, 0),
    "full+teacher+frozen-bn+seed1": ({"freeze_batchnorm_stats": True}, 1, 1),
}


def row_config(base: ExperimentConfig, flags: dict[str, bool], steps: int, seed: int | None = None) -> ExperimentConfig:
    """``base`` with the selfsup ``flags``, ``steps`` optimizer steps and (when given) another seed."""
    seed = base.train.seed if seed is None else seed
    cfg = dataclasses.replace(base, train=dataclasses.replace(base.train, max_steps=steps, seed=seed),
                              selfsup=dataclasses.replace(base.selfsup, **flags))
    cfg.validate()
    return cfg


def format_table(results: dict) -> str:
    rows = [("before", results["before"]), *results["rows"].items()]
    width = max(len(name) for name, _ in rows)
    lines = [f"{'model':<{width}} {'Sintel clean EPE':>17} {'Sintel final EPE':>17} {'DAVIS J':>8} {'train s':>8}"]
    for name, row in rows:
        train_s = f"{row['train_s']:.0f}" if "train_s" in row else "-"
        lines.append(f"{name:<{width}} {row['sintel_clean_epe']:>17.3f} {row['sintel_final_epe']:>17.3f} "
                     f"{row['davis_j']:>8.3f} {train_s:>8}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("config/train_selfsup.yaml"))
    parser.add_argument("--steps", type=int, default=250, help="optimizer steps per row")
    parser.add_argument("--full-steps", type=int, default=500, help="optimizer steps of the final full run (0: none)")
    parser.add_argument("--teacher-config", type=Path, default=Path("config/train_selfsup_teacher.yaml"))
    parser.add_argument("--rows", nargs="*", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--teacher-rows", nargs="*", default=list(TEACHER_ROWS), choices=list(TEACHER_ROWS))
    parser.add_argument("--recipes", nargs="*", type=Path, default=[],
                        help="more self-supervised configs, each trained as written and scored as row "
                             "<config stem without train_> in RUNS/<that name>")
    parser.add_argument("--motion-model", type=Path, default=None,
                        help="MotionLayerNet file fused with every fine-tuned row (\"before\" keeps the bundled one)")
    parser.add_argument("--no-refine-flow", action="store_true",
                        help="score the fine-tuned rows without the runtime flow refinement (\"before\" keeps it): "
                             "for models taught the refined flow (selfsup.teacher_flow_source: refined)")
    parser.add_argument("--runs", type=Path, default=Path("runs/selfsup_ablation"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/selfsup_finetune.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    root = shared_data_root()
    base = load_config(args.config)
    results = {"machine": f"{platform.machine()} 1 thread", "steps_per_row": args.steps,
               "held_out": {"davis": list(HELD_OUT_DAVIS), "sintel": [f"clean/{HELD_OUT_SINTEL}", f"final/{HELD_OUT_SINTEL}"]},
               "config": str(args.config), "teacher_config": str(args.teacher_config),
               "recipes": [str(recipe) for recipe in args.recipes], "motion_model": str(args.motion_model or "bundled"),
               "fine_tuned_rows_refine_flow": not args.no_refine_flow,
               "before": held_out_scores(DEFAULT_MODEL_PATH, root), "rows": {}}
    runs = [(name, row_config(base, ROWS[name], args.steps)) for name in args.rows]
    teacher = load_config(args.teacher_config)
    if args.full_steps:
        runs += [("full_run", row_config(base, ROWS["full"], args.full_steps))]
    for name in args.teacher_rows:
        flags, factor, seed = TEACHER_ROWS[name]
        runs.append((name, row_config(teacher, flags, teacher.train.max_steps * factor, seed)))
    for recipe in args.recipes:
        runs.append((recipe.stem.removeprefix("train_"), load_config(recipe)))
    for name, cfg in runs:
        run_dir = args.runs / name.replace("+", "_")
        result = train_selfsup(cfg, run_dir, resume="auto")
        if result.signal is not None:  # interrupted: last.pt is written, a rerun continues the row
            raise SystemExit(result.exit_code)
        train_s = load_checkpoint(run_dir / LAST_NAME)["elapsed_s"]
        scores = held_out_scores(run_dir / WEIGHTS_NAME, root, args.motion_model, refine=not args.no_refine_flow)
        results["rows"][name] = {**scores, "train_s": train_s, "steps": result.step, "model": str(run_dir / WEIGHTS_NAME),
                                 "better_than_before": is_better(scores, results["before"])}
        print(format_table(results), flush=True)
    args.out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(format_table(results))
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
