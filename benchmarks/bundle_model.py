"""Copy a finished run's best weights to models/ and write the model card from their metadata
and a committed evaluation JSON (both produced by named commands).

    python benchmarks/bundle_model.py --run runs/bundled --eval benchmarks/eval_bundled.json
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from jointperception.commands.evaluate import format_table
from jointperception.models.weights import DEFAULT_MODEL_PATH, load_model
from jointperception.train.trainer import WEIGHTS_NAME


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/bundled"))
    parser.add_argument("--eval", type=Path, default=Path("benchmarks/eval_bundled.json"))
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_PATH)
    args = parser.parse_args()
    _, model_cfg, meta = load_model(args.run / WEIGHTS_NAME)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.run / WEIGHTS_NAME, args.out)
    args.out.chmod(0o644)
    results = json.loads(args.eval.read_text())
    cfg = meta["config"]
    lines = [
        f"# Model card: {args.out.name}",
        "",
        f"JointNet `{model_cfg.width}` (fusion: {model_cfg.fusion}), SegFlow-style segmentation + flow + occlusion.",
        "Weights are safetensors (no pickle); the ModelConfig and this metadata are in the file header.",
        "",
        "## Training",
        f"- command: `{meta['command']}` (config: `config/train_synthetic.yaml`)",
        f"- data: procedural synthetic pairs, {cfg['data']['width']}x{cfg['data']['height']}, seeds "
        f"{cfg['data']['train_seed']}..{cfg['data']['train_seed'] + cfg['data']['train_samples'] - 1} "
        f"(up to {cfg['data']['max_objects']} objects, photometric changes: {cfg['data']['photometric']}); "
        "no real images and no labels from the evaluation sets",
        f"- mode: {cfg['train']['mode']}, steps: {meta['final_step']} (best at step {meta['best_step']}), "
        f"batch {cfg['train']['batch_size']}, AdamW lr {cfg['train']['lr']} cosine to {cfg['train']['min_lr']}",
        f"- seed: {meta['seed']}; wall time: {meta['wall_time_s'] / 60:.0f} min on 2 CPU cores (shared with other work)",
        f"- validation at the best step (synthetic, seeds from {cfg['data']['val_seed']}): "
        + ", ".join(f"{k} {v:.3f}" for k, v in meta["best_metrics"].items() if k in ("epe", "epe_noc", "mask_j", "occ_acc")),
        "",
        "## Evaluation",
        f"From `{args.eval}` (command in the README). Network size for real data: {results['network_size'][0]}x{results['network_size'][1]}.",
        "",
    ]
    lines.append(format_table(results))
    card = args.out.with_suffix(".md")
    card.write_text("\n".join(lines) + "\n")
    print(f"bundled {args.out} and wrote {card}")


if __name__ == "__main__":
    main()
