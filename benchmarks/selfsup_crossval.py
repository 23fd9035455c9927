"""Cross-validated before/after of one self-supervised recipe: every DAVIS sequence and Sintel scene
held out from the fine-tuning once, each scored by the model that never saw its frames.

The recipe's fixed split (DAVIS blackswan, cows, kite-surf; Sintel market_5) is fold 1; the other
seven DAVIS sequences and two Sintel scenes make folds 2 and 3, in alphabetical order. Each fold
trains the recipe as written with only its held-out sets changed (``selfsup.holdout`` for the
unlabelled video, ``data.photo_holdout`` for the textures of the labelled synthetic pairs), from
the bundled model, and scores the bundled model and its own model on its held-out sets through the
runtime pipeline at 320x240 (``eval.held_out.held_out_scores``). The bundled
supervised model itself took photo textures from every sequence outside fold 1, so folds 2 and 3
hold out the fine-tuning only.

Aggregate: DAVIS J = mean over the 10 sequences of their per-pair J, Sintel = mean EPE over the
3 scenes x 2 passes; "better" as in ``eval.held_out.is_better`` (lower Sintel EPE and higher DAVIS J).

    python benchmarks/selfsup_crossval.py --folds 2 --runs runs/crossval --out /tmp/fold2.json  # one fold per core
    python benchmarks/selfsup_crossval.py --runs runs/crossval --out benchmarks/results/selfsup_crossval.json

Runs resume from RUNS/foldN/last.pt, so a rerun after the per-fold runs only scores; a finished
run of the recipe on its fixed split, copied to RUNS/fold1, serves as fold 1.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
from pathlib import Path

import numpy as np
import torch

from jointperception.config import ExperimentConfig, load_config
from jointperception.data.paths import shared_data_root
from jointperception.data.real import davis_sequences, sintel_pairs
from jointperception.eval.held_out import CROSSVAL_FOLDS, held_out_scores, mean_sintel_epe
from jointperception.models.weights import DEFAULT_MODEL_PATH
from jointperception.train.selfsup_trainer import WEIGHTS_NAME, train_selfsup


def fold_config(recipe: ExperimentConfig, fold: int) -> ExperimentConfig:
    """``recipe`` with fold ``fold``'s sequences and scene held out of the video and the textures."""
    davis, sintel = CROSSVAL_FOLDS[fold]
    holdout = (*davis, f"*{sintel}*")
    cfg = dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, photo_holdout=holdout),
                              selfsup=dataclasses.replace(recipe.selfsup, holdout=holdout))
    cfg.validate()
    return cfg


def check_folds_cover(root: Path) -> None:
    """Exit with a message unless CROSSVAL_FOLDS names every DAVIS sequence and Sintel scene under ``root``
    exactly once (a changed data set would otherwise leave sequences out of the aggregate)."""
    davis = [name for names, _ in CROSSVAL_FOLDS.values() for name in names]
    if sorted(davis) != davis_sequences(root / "davis2016"):
        raise SystemExit(f"{root / 'davis2016'}: sequences {davis_sequences(root / 'davis2016')} are not the folds' {sorted(davis)}")
    scenes = [scene for _, scene in CROSSVAL_FOLDS.values()]
    for pair in sintel_pairs(root / "sintel"):
        matches = [scene for scene in scenes if scene in pair.name]
        if len(matches) != 1:
            raise SystemExit(f"{root / 'sintel'}: pair {pair.name} matches the fold scenes {matches}, not exactly one")


def aggregate(folds: dict[int, dict]) -> dict[str, dict[str, float]]:
    """Per-fold before/after scores -> {"before" | "after": {"davis_j", "sintel_epe"}} over every
    held-out sequence (mean of per-sequence J) and scene (mean of the per-scene pass means)."""
    result = {}
    for side in ("before", "after"):
        per_sequence = [j for fold in folds.values() for j in fold[side]["davis_per_sequence_j"].values()]
        result[side] = {"davis_j": float(np.mean(per_sequence)),
                        "sintel_epe": float(np.mean([mean_sintel_epe(fold[side]) for fold in folds.values()])),
                        "sequences": len(per_sequence)}
    after, before = result["after"], result["before"]
    result["better_than_before"] = after["sintel_epe"] < before["sintel_epe"] and after["davis_j"] > before["davis_j"]
    return result


def format_table(folds: dict[int, dict], total: dict | None) -> str:
    lines = [f"{'fold':<6} {'Sintel EPE before':>18} {'after':>8} {'DAVIS J before':>15} {'after':>8}"]
    for fold, scores in folds.items():
        before, after = scores["before"], scores["after"]
        lines.append(f"{fold:<6} {mean_sintel_epe(before):>18.3f} {mean_sintel_epe(after):>8.3f} "
                     f"{before['davis_j']:>15.3f} {after['davis_j']:>8.3f}")
    if total is not None:
        lines.append(f"{'all':<6} {total['before']['sintel_epe']:>18.3f} {total['after']['sintel_epe']:>8.3f} "
                     f"{total['before']['davis_j']:>15.3f} {total['after']['davis_j']:>8.3f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=Path("config/train_selfsup_refined_teacher.yaml"))
    parser.add_argument("--folds", nargs="*", type=int, default=list(CROSSVAL_FOLDS), choices=list(CROSSVAL_FOLDS))
    parser.add_argument("--runs", type=Path, default=Path("runs/crossval"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/selfsup_crossval.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    root = shared_data_root()
    check_folds_cover(root)
    recipe = load_config(args.recipe)
    folds: dict[int, dict] = {}
    for fold in args.folds:
        davis, sintel = CROSSVAL_FOLDS[fold]
        run_dir = args.runs / f"fold{fold}"
        result = train_selfsup(fold_config(recipe, fold), run_dir, resume="auto")
        if result.signal is not None:  # interrupted: last.pt is written, a rerun continues the fold
            raise SystemExit(result.exit_code)
        folds[fold] = {"davis": list(davis), "sintel": [f"clean/{sintel}", f"final/{sintel}"],
                       "model": str(run_dir / WEIGHTS_NAME), "steps": result.step,
                       "before": held_out_scores(DEFAULT_MODEL_PATH, root, davis=davis, sintel=sintel),
                       "after": held_out_scores(run_dir / WEIGHTS_NAME, root, davis=davis, sintel=sintel)}
        print(format_table(folds, None), flush=True)
    total = aggregate(folds) if len(folds) == len(CROSSVAL_FOLDS) else None
    results = {"machine": f"{platform.machine()} 1 thread", "recipe": str(args.recipe),
               "folds": {str(fold): scores for fold, scores in folds.items()}, "all": total}
    args.out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(format_table(folds, total))
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
