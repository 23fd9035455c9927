"""Config loading: defaults, overrides, and errors that name the bad key."""
from pathlib import Path

import pytest

from jointperception.config import ExperimentConfig, config_from_dict, load_config
from jointperception.errors import ConfigError


def test_defaults_validate_and_round_trip():
    cfg = config_from_dict({})
    assert cfg == ExperimentConfig()
    assert config_from_dict(cfg.to_dict()) == cfg


def test_yaml_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 0.01\n  mode: joint\ndata:\n  height: 64\n")
    cfg = load_config(path)
    assert cfg.train.lr == 0.01 and cfg.train.mode == "joint" and cfg.data.height == 64
    assert cfg.model.width == "tiny"


@pytest.mark.parametrize(
    "text, key",
    [
        ("train:\n  lerning_rate: 0.1\n", "train.lerning_rate"),
        ("optimizer: {}\n", "optimizer"),
        ("train:\n  lr: -1\n", "train.lr"),
        ("train:\n  batch_size: 2.5\n", "train.batch_size"),
        ("train:\n  mode: sometimes\n", "train.mode"),
        ("data:\n  height: 100\n", "data.height"),
        ("data:\n  photometric: 'yes'\n", "data.photometric"),
        ("model: 3\n", "model"),
        ("data:\n  val_seed: 5\n", "data.val_seed"),
    ],
)
def test_bad_config_names_the_key(tmp_path, text, key):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert key in str(info.value) and str(path) in str(info.value)


def test_missing_and_unparsable_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "broken.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


SHIPPED_TRAINING_CONFIGS = sorted((Path(__file__).resolve().parents[1] / "config").glob("train_*.yaml"))


@pytest.mark.parametrize("path", SHIPPED_TRAINING_CONFIGS, ids=lambda p: p.name)
def test_shipped_training_configs_load(path: Path) -> None:
    cfg = load_config(path)
    assert config_from_dict(cfg.to_dict()) == cfg
