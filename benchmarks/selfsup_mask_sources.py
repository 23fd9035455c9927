"""Which part of the published mask a self-supervised fine-tune moves: held-out DAVIS J of every
mask the pipeline can publish (segmentation branch, motion layers, residual cue, their fused vote
per pair, and the fused mask streamed as the node publishes it), with held-out Sintel EPE, for the
supervised bundled model and each fine-tuned model given (``eval.held_out.held_out_mask_sources``).

A diagnostic beside benchmarks/selfsup_crossval.py, whose measure (per-pair fused J) decides the
criterion; this script changes no model and no measure.

    python benchmarks/selfsup_mask_sources.py --models full=runs/ablation_current/full/selfsup.safetensors \
        --crossval-runs runs/crossval --out benchmarks/results/selfsup_mask_sources.json

``--models NAME=PATH`` are scored on the fixed split (fold 1 of ``CROSSVAL_FOLDS``);
``--crossval-runs RUNS`` adds RUNS/foldN/selfsup.safetensors for the folds it holds, each on its
own held-out sets beside the bundled model on the same sets.
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np
import torch

from jointperception.data.paths import shared_data_root
from jointperception.eval.held_out import CROSSVAL_FOLDS, held_out_mask_sources, mean_sintel_epe
from jointperception.models.weights import DEFAULT_MODEL_PATH
from jointperception.runtime.mask_memory import DEFAULT_MEMORY_WEIGHT
from jointperception.runtime.motion_layers import MASK_SOURCES
from jointperception.train.selfsup_trainer import WEIGHTS_NAME

MASKS = (*MASK_SOURCES, "fused_stream")
BEFORE = "supervised (bundled)"
CROSSVAL_PREFIX = "cross-validated recipe, fold"


def named_model(text: str) -> tuple[str, Path]:
    """'NAME=PATH' -> (NAME, PATH) of an existing model file."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    if not Path(path).is_file():
        raise argparse.ArgumentTypeError(f"{path}: model file not found")
    return name, Path(path)


def crossval_aggregate(folds: dict[str, dict]) -> dict[str, dict[str, float]] | None:
    """With every fold of ``CROSSVAL_FOLDS`` scored: {"before" | "after": {mask: mean over all held-out
    sequences of their J}} for the bundled model and the cross-validated recipe (each sequence held
    out once, as benchmarks/selfsup_crossval.py aggregates); else None."""
    after_names = {fold: [name for name in scores["models"] if name.startswith(CROSSVAL_PREFIX)]
                   for fold, scores in folds.items()}
    if sorted(int(fold) for fold, names in after_names.items() if names) != sorted(CROSSVAL_FOLDS):
        return None
    result = {}
    for side in ("before", "after"):
        result[side] = {}
        for mask in MASKS:
            values = [j for fold, scores in folds.items()
                      for j in scores["models"][BEFORE if side == "before" else after_names[fold][0]]
                      ["davis_j_by_mask"][mask]["per_sequence_j"].values()]
            result[side][mask] = float(np.mean(values))
    return result


def format_table(folds: dict[str, dict]) -> str:
    header = f"{'fold':<5} {'model':<34} {'Sintel':>7} " + " ".join(f"{mask:>12}" for mask in MASKS)
    lines = [header]
    for fold, scores in folds.items():
        for name, result in scores["models"].items():
            row = " ".join(f"{result['davis_j_by_mask'][mask]['j']:>12.3f}" for mask in MASKS)
            lines.append(f"{fold:<5} {name:<34} {mean_sintel_epe(result):>7.2f} {row}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", type=named_model, default=[], help="NAME=PATH fine-tunes on the fixed split")
    parser.add_argument("--crossval-runs", type=Path, default=None, help="benchmarks/selfsup_crossval.py's --runs folder")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/selfsup_mask_sources.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    root = shared_data_root()
    if not (root / "davis2016").is_dir():
        raise SystemExit(f"{root / 'davis2016'}: DAVIS not found (set JOINTPERCEPTION_DATA)")
    fold_models: dict[int, list[tuple[str, Path]]] = {1: list(args.models)}
    if args.crossval_runs is not None:
        for fold in CROSSVAL_FOLDS:
            path = args.crossval_runs / f"fold{fold}" / WEIGHTS_NAME
            if path.is_file():
                fold_models.setdefault(fold, []).append((f"{CROSSVAL_PREFIX} {fold}", path))
    folds: dict[str, dict] = {}
    for fold, models in fold_models.items():
        davis, sintel = CROSSVAL_FOLDS[fold]
        scores = {"davis": list(davis), "sintel": sintel, "models": {}, "paths": {}}
        for name, path in [(BEFORE, DEFAULT_MODEL_PATH), *models]:
            scores["models"][name] = held_out_mask_sources(path, root, davis, sintel)
            scores["paths"][name] = str(path)
        folds[str(fold)] = scores
        print(format_table(folds), flush=True)
    total = crossval_aggregate(folds)
    if total is not None:
        print("all held-out sequences, cross-validated recipe: "
              + ", ".join(f"{mask} {total['before'][mask]:.3f} -> {total['after'][mask]:.3f}" for mask in MASKS))
    results = {"machine": f"{platform.machine()} 1 thread", "memory_weight": DEFAULT_MEMORY_WEIGHT,
               "masks": list(MASKS), "folds": folds, "crossval_all": total}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
