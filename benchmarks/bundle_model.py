"""Copy a finished run's weights to models/ and write the model card from their metadata and a
committed evaluation JSON (both produced by named commands).

    python benchmarks/bundle_model.py --run runs/photo --eval benchmarks/results/eval.json \
        --start-model runs/bundled/best.safetensors
    python benchmarks/bundle_model.py --run runs/recipes/selfsup_refined_teacher --eval \
        benchmarks/results/eval_model_jointnet_tiny_selfsup.json --crossval benchmarks/results/selfsup_crossval.json \
        --out models/jointnet_tiny_selfsup.safetensors

A supervised run (train.mode joint | iterative) bundles its best.safetensors; a self-supervised
fine-tuning run (train.mode selfsup) its final selfsup.safetensors, and the card then also
describes the model it started from (``selfsup.init_from``). So does the card of a supervised run
that started from trained weights (``train.init_from``); when that was the bundled file this call
replaces, ``--start-model`` names a copy of it (e.g. the run that produced it).
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from jointperception.commands.evaluate import format_table
from jointperception.eval.held_out import mean_sintel_epe
from jointperception.models.weights import DEFAULT_MODEL_PATH, load_model
from jointperception.train import selfsup_trainer, trainer


def textures_line(data: dict) -> str:
    """How the synthetic layers were textured: procedural only, or partly with real-photo crops."""
    if not data.get("photo_textures"):
        return "procedural textures; no real images and no labels from the evaluation sets"
    return (f"layers textured with probability {data['photo_fraction']} by crops of the unlabelled frames "
            f"{', '.join(data['photo_textures'])} (held out: {', '.join(data['photo_holdout']) or 'none'}), "
            "else procedural; no labels from the evaluation sets")


def supervised_lines(meta: dict) -> list[str]:
    cfg = meta["config"]
    start = cfg["train"].get("init_from")
    return [
        f"- command: `{meta['command']}`",
        *([f"- warm-started from: `{start}` (as it was when this run started)"] if start else []),
        f"- data: synthetic pairs, {cfg['data']['width']}x{cfg['data']['height']}, seeds "
        f"{cfg['data']['train_seed']}..{cfg['data']['train_seed'] + cfg['data']['train_samples'] - 1} "
        f"(up to {cfg['data']['max_objects']} objects, photometric changes: {cfg['data']['photometric']}); "
        + textures_line(cfg["data"]),
        f"- mode: {cfg['train']['mode']}, steps: {meta['final_step']} (best at step {meta['best_step']}), "
        f"batch {cfg['train']['batch_size']}, AdamW lr {cfg['train']['lr']} cosine to {cfg['train']['min_lr']}",
        f"- seed: {meta['seed']}; wall time: {meta['wall_time_s'] / 60:.0f} min on 2 CPU cores (shared with other work)",
        f"- validation at the best step (synthetic, seeds from {cfg['data']['val_seed']}): "
        + ", ".join(f"{k} {v:.3f}" for k, v in meta["best_metrics"].items() if k in ("epe", "epe_noc", "mask_j", "occ_acc")),
    ]


def teacher_text(sc: dict) -> str:
    """The distilled teachers of a selfsup config, e.g. "; teachers distilled: flow (refined ..., weight 0.5)"."""
    flow_sources = {"classical": "DIS-medium, forward-backward checked", "refined": "the step's own flow after the runtime refinement"}
    mask_sources = {"classical": "classical motion segmentation", "pipeline": "the starting model's published mask"}
    parts = []
    if sc["teacher_flow_weight"]:
        parts.append(f"flow ({flow_sources[sc.get('teacher_flow_source', 'classical')]}, weight {sc['teacher_flow_weight']})")
    if sc["teacher_mask_weight"]:
        parts.append(f"mask ({mask_sources[sc.get('teacher_mask_source', 'classical')]}, weight {sc['teacher_mask_weight']})")
    return f"; teachers distilled: {', '.join(parts)}" if parts else "; no teacher"


def selfsup_lines(meta: dict) -> list[str]:
    cfg = meta["config"]
    sc, tc = cfg["selfsup"], cfg["train"]
    return [
        f"- command: `{meta['command']}`",
        f"- starts from: `{meta['init_from']}` (the supervised model described below)",
        f"- unlabelled data: {', '.join(sc['images'] + sc['videos'] + sc['bags'])} under the shared data root, "
        f"frames resized to {sc['frame_width']}x{sc['frame_height']}, {cfg['data']['width']}x{cfg['data']['height']} "
        f"crops, dt in [1, {sc['max_dt']}]; no labels; held out: {', '.join(sc['holdout'])}",
        f"- losses: Every Frame Counts (lambda_cons {sc['consistency_weight']}, lambda_occ {sc['occlusion_weight']}, "
        f"lambda_sm {sc['smoothness_weight']}){teacher_text(sc)}; {sc['labelled_batch_size']} labelled synthetic pairs per step"
        + ("; BatchNorm running statistics frozen at the starting model's" if sc.get("freeze_batchnorm_stats") else ""),
        f"- trained branches: {', '.join(sc.get('train_branches', ('segmentation', 'flow')))}; unlabelled pairs "
        + ("pre-aligned as the runtime does" if sc.get("prealign") else "as recorded (not pre-aligned)"),
        f"- steps: {meta['final_step']}, batch {tc['batch_size']} pairs in both directions, AdamW lr {tc['lr']} "
        f"cosine to {tc['min_lr']}; seed {meta['seed']}; wall time {meta['wall_time_s'] / 60:.0f} min on 2 CPU cores",
    ]


def crossval_lines(path: Path) -> list[str]:
    """Card section from a benchmarks/selfsup_crossval.py JSON: the recipe's before/after per fold,
    each fold scored by the model trained without its sequences."""
    results = json.loads(path.read_text())
    lines = ["", "## Held out from the fine-tuning",
             f"From `{path}`: the recipe `{results['recipe']}` trained once per fold from the starting model, each fold's "
             "DAVIS sequences and Sintel scene kept out of the unlabelled video; per-pair fused DAVIS J and Sintel EPE "
             "(mean of clean and final) of the starting model (before) and the fold's model (after).", "",
             "| held out | Sintel EPE before | after | DAVIS J before | after |", "|---|---|---|---|---|"]
    for fold in results["folds"].values():
        before, after = fold["before"], fold["after"]
        lines += [f"| {', '.join(fold['davis'])}; {fold['sintel'][0].split('/')[1]} "
                  f"| {mean_sintel_epe(before):.2f} | {mean_sintel_epe(after):.2f} "
                  f"| {before['davis_j']:.3f} | {after['davis_j']:.3f} |"]
    total = results["all"]
    if total is not None:
        lines += [f"| all {total['after']['sequences']} sequences | {total['before']['sintel_epe']:.2f} "
                  f"| {total['after']['sintel_epe']:.2f} | {total['before']['davis_j']:.3f} | {total['after']['davis_j']:.3f} |"]
    return lines


def starting_model(init_from: str, override: Path | None) -> Path:
    """The file a run started from: ``override`` (--start-model), else "bundled" = the bundled file."""
    return override or (DEFAULT_MODEL_PATH if init_from == "bundled" else Path(init_from))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/bundled"))
    parser.add_argument("--eval", type=Path, default=Path("benchmarks/results/eval.json"))
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_PATH)
    parser.add_argument("--start-model", type=Path, default=None,
                        help="the model the run started from, when its init_from (e.g. bundled) no longer names it")
    parser.add_argument("--crossval", type=Path, default=None,
                        help="benchmarks/selfsup_crossval.py JSON of the run's recipe, shown on a self-supervised card")
    args = parser.parse_args()
    selfsup = (args.run / selfsup_trainer.WEIGHTS_NAME).exists()
    weights = args.run / (selfsup_trainer.WEIGHTS_NAME if selfsup else trainer.WEIGHTS_NAME)
    _, model_cfg, meta = load_model(weights)
    init_from = meta["config"]["train"].get("init_from") if not selfsup else ""
    start_lines = []
    if init_from:
        start = starting_model(init_from, args.start_model)
        if start.resolve() == args.out.resolve():
            raise SystemExit(f"{args.run}: started from {init_from}, the file being replaced; name a copy with --start-model")
        start_lines = ["", f"### The starting model `{init_from}` ({start})", *supervised_lines(load_model(start)[2])]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights, args.out)
    args.out.chmod(0o644)
    results = json.loads(args.eval.read_text())
    lines = [
        f"# Model card: {args.out.name}",
        "",
        f"JointNet `{model_cfg.width}` (fusion: {model_cfg.fusion}), SegFlow-style segmentation + flow + occlusion"
        + ("; the decoder's warped cost volumes (`model.cost_volumes`)." if model_cfg.cost_volumes else "."),
        "Weights are safetensors (no pickle); the ModelConfig and this metadata are in the file header.",
        "",
        "## Training",
        *(selfsup_lines(meta) if selfsup else supervised_lines(meta)),
        *start_lines,
    ]
    if selfsup:
        start = starting_model(meta["init_from"], args.start_model)
        _, _, start_meta = load_model(start)
        lines += ["", f"### The starting model `{meta['init_from']}`", *supervised_lines(start_meta), "",
                  "## Use", f"For real video, in place of the bundled supervised model: `predict --model {args.out}`, "
                  f"or the node parameter `model:={args.out}`. Fine-tuned on real frames without their labels; "
                  "compare this table with the starting model's card, and see the README for the before/after "
                  "on the sequences held out from the fine-tuning."]
        if args.crossval is not None:
            lines += crossval_lines(args.crossval)
    lines += [
        "",
        "## Evaluation",
        f"From `{args.eval}` (command in the README). Network size for real data: {results['network_size'][0]}x{results['network_size'][1]}.",
        "",
        format_table(results),
    ]
    card = args.out.with_suffix(".md")
    card.write_text("\n".join(lines) + "\n")
    print(f"bundled {args.out} and wrote {card}")


if __name__ == "__main__":
    main()
