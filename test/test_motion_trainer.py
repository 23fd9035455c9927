"""MotionLayerNet training (train.mode: motion_layers) through the CLI: cached flows from the bundled
joint model, checkpoints, exact resume, the exported model file, and config errors."""
from __future__ import annotations

import pytest
import torch

from jointperception.cli import main
from jointperception.config import config_from_dict
from jointperception.errors import ConfigError
from jointperception.models.weights import load_motion_model
from jointperception.train.checkpoint import load_checkpoint
from jointperception.train.metrics_log import read_metrics

TINY = """
data: {height: 64, width: 96, train_samples: 12, val_samples: 4, max_objects: 2, max_translation: 4.0, num_workers: 0}
train: {mode: motion_layers, max_steps: 6, batch_size: 2, lr: 0.002, min_lr: 0.0001, warmup_steps: 1,
        eval_every: 3, log_every: 1}
motion: {num_layers: 3, base_width: 8, predicted_flow_samples: 4}
"""


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "motion.yaml"
    path.write_text(TINY)
    return path


def test_train_resume_and_export(tiny_config, tmp_path):
    run_dir = tmp_path / "run"
    assert main(["train", "--config", str(tiny_config), "--out", str(run_dir), "--max-steps", "3"]) == 0
    flows = torch.load(run_dir / "flow_train.pt", weights_only=True)["tensors"]
    assert flows["gt_flow"].shape == (12, 2, 64, 96) and flows["predicted_flow"].shape == (4, 2, 64, 96)
    assert torch.isfinite(flows["predicted_flow"]).all() and flows["predicted_flow"].abs().max() > 0.1
    assert main(["train", "--config", str(tiny_config), "--out", str(run_dir)]) == 2  # last.pt exists: needs --resume
    assert main(["train", "--config", str(tiny_config), "--out", str(run_dir), "--resume", "auto"]) == 0
    assert load_checkpoint(run_dir / "last.pt")["step"] == 6
    records = read_metrics(run_dir)
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]
    val = [r for r in records if r["kind"] == "val"]
    assert [r["step"] for r in val] == [3, 6] and all(0.0 <= r["gt_layer_j"] <= 1.0 for r in val)
    model, cfg, meta = load_motion_model(run_dir / "best.safetensors")
    assert cfg.num_layers == 3 and meta["final_step"] == 6
    assert model(torch.zeros(1, 2, 64, 96)).shape == (1, 3, 64, 96)


def test_resumed_run_matches_uninterrupted_run(tiny_config, tmp_path):
    # a constant learning rate, so that --max-steps 3 changes no step's lr; batches are drawn per step
    tiny_config.write_text(TINY.replace("min_lr: 0.0001, warmup_steps: 1", "min_lr: 0.002, warmup_steps: 0"))
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(["train", "--config", str(tiny_config), "--out", str(straight)]) == 0
    assert main(["train", "--config", str(tiny_config), "--out", str(split), "--max-steps", "3"]) == 0
    assert main(["train", "--config", str(tiny_config), "--out", str(split), "--resume", "auto"]) == 0
    a, b = load_checkpoint(straight / "last.pt")["model"], load_checkpoint(split / "last.pt")["model"]
    assert all(torch.allclose(a[key], b[key], atol=1e-6) for key in a)


def test_motion_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="motion.num_layers"):
        config_from_dict({"motion": {"num_layers": 7}})
    with pytest.raises(ConfigError, match="motion.motion_model"):
        config_from_dict({"motion": {"motion_model": "cubic"}})
    assert config_from_dict({"train": {"mode": "motion_layers"}}).train.mode == "motion_layers"
