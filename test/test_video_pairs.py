"""Unlabelled video pairs (data/video_pairs.py) from folders, videos and rosbag2 bags, and the
self-supervised trainer (train/selfsup_trainer.py): a 2-step run, resume, CLI errors."""
from __future__ import annotations

import glob
import json
from fnmatch import fnmatch
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from jointperception.cli import main as cli_main
from jointperception.config import config_from_dict, load_config
from jointperception.data.bags import BagImageWriter
from jointperception.data.formats import write_image
from jointperception.data.video_pairs import (
    FrameSequence,
    VideoPairDataset,
    bag_sequence,
    drop_held_out,
    image_sequences,
    video_sequence,
)
from jointperception.errors import ConfigError, DataFormatError, InputError
from jointperception.models.weights import load_model
from jointperception.train.checkpoint import load_checkpoint
from jointperception.train.selfsup_trainer import train_selfsup

SIZE = (48, 32)  # (width, height) frames are resized to


def numbered_frames(count: int, height: int = 40, width: int = 60) -> list[np.ndarray]:
    """Frame k is the constant value 20 k (readable back after crops and resizes)."""
    return [np.full((height, width, 3), 20 * k, dtype=np.uint8) for k in range(count)]


def write_folder(folder: Path, frames: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True)
    for k, frame in enumerate(frames):
        write_image(folder / f"{k:05d}.png", frame)
    return folder


def test_pairs_have_gaps_in_one_to_max_dt_in_both_orders() -> None:
    sequences = [FrameSequence("long", tuple(numbered_frames(10, 32, 48))),
                 FrameSequence("pair", tuple(numbered_frames(2, 32, 48)))]
    dataset = VideoPairDataset(sequences, 400, seed=3, height=24, width=40, max_dt=5)
    gaps = {name: set() for name in ("long", "pair")}
    for index in range(400):
        sequence, first, second = dataset.sample_indices(index)
        gaps[sequences[sequence].name].add(second - first)
        item = dataset[index]
        assert item["image1"].shape == (3, 24, 40)
        assert int(item["image1"][0, 0, 0]) == 20 * first and int(item["image2"][0, 0, 0]) == 20 * second
    assert gaps["long"] == {-5, -4, -3, -2, -1, 1, 2, 3, 4, 5}
    assert gaps["pair"] == {-1, 1}


def test_prealigned_pairs_take_the_pan_out_of_the_second_frame() -> None:
    """A textured picture panned 6 px per frame: prealigned, the second frame matches the first
    (all but the replicated border); without it, it does not."""
    wide = cv2.GaussianBlur(np.random.default_rng(4).integers(0, 256, (64, 140, 3), dtype=np.uint8), (0, 0), 1.5)
    frames = tuple(np.ascontiguousarray(wide[:, 6 * k : 6 * k + 96]) for k in range(4))
    sequence = [FrameSequence("pan", frames)]
    plain = VideoPairDataset(sequence, 20, seed=1, height=64, width=96, max_dt=2)
    aligned = VideoPairDataset(sequence, 20, seed=1, height=64, width=96, max_dt=2, prealign=True)
    inner = np.s_[:, 4:-4, 16:-16]  # away from the border that the shift replicates
    for index in range(20):
        a, b = plain[index], aligned[index]
        assert torch.equal(a["image1"], b["image1"])
        assert (a["image1"][inner].int() - a["image2"][inner].int()).abs().float().mean() > 10
        assert torch.equal(b["image1"][inner], b["image2"][inner])


def test_folder_and_glob_sources_resize_and_hold_out(tmp_path: Path) -> None:
    write_folder(tmp_path / "a", numbered_frames(3))
    write_folder(tmp_path / "b", numbered_frames(4))
    (tmp_path / "a" / "notes.txt").write_text("not a frame")
    [folder] = image_sequences(str(tmp_path / "a"), SIZE)
    assert folder.name == "a" and len(folder.frames) == 3 and folder.frames[0].shape == (32, 48, 3)
    both = image_sequences(str(tmp_path / "*" / "*.png"), SIZE)
    assert [(s.name, len(s.frames)) for s in both] == [("a", 3), ("b", 4)]
    assert [s.name for s in drop_held_out(both, ["b*"])] == ["a"]
    with pytest.raises(InputError, match="matches no image"):
        image_sequences(str(tmp_path / "missing" / "*.png"), SIZE)


def test_sequence_needs_two_frames(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="at least 2 frames"):
        image_sequences(str(write_folder(tmp_path / "one", numbered_frames(1))), SIZE)


def test_video_source(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (60, 40))
    for frame in numbered_frames(5):
        writer.write(frame)
    writer.release()
    sequence = video_sequence(path, SIZE)
    assert sequence.name == "clip" and len(sequence.frames) == 5
    assert [int(round(f.mean())) for f in sequence.frames] == pytest.approx([0, 20, 40, 60, 80], abs=3)


def test_bag_source(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (32, 48, 3), dtype=np.uint8) for _ in range(3)]
    with BagImageWriter(tmp_path / "bag") as writer:
        for k, frame in enumerate(frames):
            writer.write("/camera/image_raw", k * 100_000_000, frame, "rgb8")
    sequence = bag_sequence(tmp_path / "bag", "/camera/image_raw", SIZE)
    assert sequence.name == "bag" and all(np.array_equal(a, b) for a, b in zip(sequence.frames, frames))
    with BagImageWriter(tmp_path / "png_bag", storage="sqlite3") as writer:  # CompressedImage, lossless
        for k, frame in enumerate(frames):
            writer.write_compressed("/camera/image_raw/compressed", k * 100_000_000, frame, "png")
    compressed = bag_sequence(tmp_path / "png_bag", "/camera/image_raw/compressed", SIZE)
    assert all(np.array_equal(a, b) for a, b in zip(compressed.frames, frames))


def selfsup_config(data_root: Path, steps: int) -> dict:
    return {
        "data": {"height": 64, "width": 64, "train_samples": 16, "val_samples": 2, "max_objects": 1, "num_workers": 0},
        "train": {"mode": "selfsup", "max_steps": steps, "batch_size": 1, "lr": 1e-4, "min_lr": 1e-5,
                  "warmup_steps": 0, "eval_every": 2, "log_every": 1, "amp": False},
        "selfsup": {"init_from": "bundled", "data_root": str(data_root), "images": ["*"],
                    "holdout": ["held"], "frame_width": 96, "frame_height": 64, "labelled_batch_size": 1},
    }


def test_selfsup_training_runs_resumes_and_exports(tmp_path: Path) -> None:
    write_folder(tmp_path / "data" / "clip", numbered_frames(4))
    write_folder(tmp_path / "data" / "held", numbered_frames(3))
    run = tmp_path / "run"
    first = train_selfsup(config_from_dict(selfsup_config(tmp_path / "data", 2)), run)
    assert first.step == 2 and load_checkpoint(run / "last.pt")["step"] == 2
    resumed = train_selfsup(config_from_dict(selfsup_config(tmp_path / "data", 3)), run, resume="auto")
    assert resumed.step == 3 and resumed.signal is None
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert {"loss_pm", "loss_sm", "loss_occ", "loss_cons", "labelled_loss_seg"} <= set(records[-1])
    model, _, metadata = load_model(resumed.weights)  # loads as a plain JointNet: heads stay in last.pt
    assert metadata["final_step"] == 3 and "heads" in load_checkpoint(run / "last.pt")
    written = resumed.weights.stat().st_mtime_ns
    again = train_selfsup(config_from_dict(selfsup_config(tmp_path / "data", 3)), run, resume="auto", command="rerun")
    assert again.weights == resumed.weights and again.step == 3  # a finished run is left as it is
    assert resumed.weights.stat().st_mtime_ns == written and load_model(again.weights)[2]["command"] != "rerun"


def test_selfsup_with_the_classical_teacher_logs_its_terms(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (40, 80, 3), dtype=np.uint8)
    write_folder(tmp_path / "data" / "clip", [np.ascontiguousarray(texture[:, k : k + 60]) for k in range(0, 8, 2)])
    config = selfsup_config(tmp_path / "data", 2)
    config["selfsup"] |= {"teacher_flow_weight": 0.5, "teacher_mask_weight": 1.0}
    result = train_selfsup(config_from_dict(config), tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert result.step == 2 and {"loss_teacher_flow", "teacher_epe", "loss_teacher_mask"} <= set(records[-1])
    assert all(np.isfinite(records[-1][key]) for key in ("loss_teacher_flow", "loss_teacher_mask", "loss"))


def test_selfsup_with_the_refinement_teacher_needs_no_classical_targets(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (40, 80, 3), dtype=np.uint8)
    write_folder(tmp_path / "data" / "clip", [np.ascontiguousarray(texture[:, k : k + 60]) for k in range(0, 8, 2)])
    config = selfsup_config(tmp_path / "data", 2)
    config["selfsup"] |= {"teacher_flow_weight": 0.5, "teacher_flow_source": "refined"}
    cfg = config_from_dict(config)
    assert cfg.selfsup.uses_teacher and not cfg.selfsup.uses_classical_targets  # no DIS in the data loader
    result = train_selfsup(cfg, tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert result.step == 2 and {"loss_teacher_flow", "teacher_epe", "teacher_valid"} <= set(records[-1])
    assert "loss_teacher_mask" not in records[-1] and 0.0 < records[-1]["teacher_valid"] <= 1.0
    config["selfsup"]["teacher_flow_source"] = "sparse"
    with pytest.raises(ConfigError, match="teacher_flow_source"):
        config_from_dict(config)


@pytest.mark.parametrize("frozen", [True, False])
def test_freeze_batchnorm_stats_keeps_the_starting_statistics(tmp_path: Path, frozen: bool) -> None:
    write_folder(tmp_path / "data" / "clip", numbered_frames(4))
    config = selfsup_config(tmp_path / "data", 2)
    config["selfsup"]["freeze_batchnorm_stats"] = frozen
    result = train_selfsup(config_from_dict(config), tmp_path / "run")
    start, tuned = load_model(None)[0].state_dict(), load_model(result.weights)[0].state_dict()
    statistics = [key for key in start if key.endswith(("running_mean", "running_var"))]
    affine = [key.replace("running_mean", "weight") for key in statistics if key.endswith("running_mean")]
    assert statistics and all(key in tuned for key in affine)
    assert all(torch.equal(start[key], tuned[key]) for key in statistics) == frozen
    assert not all(torch.equal(start[key], tuned[key]) for key in affine)  # the affine parameters still train


def test_train_branches_flow_leaves_the_segmentation_branch_as_it_was(tmp_path: Path) -> None:
    write_folder(tmp_path / "data" / "clip", numbered_frames(4))
    config = selfsup_config(tmp_path / "data", 2)
    config["selfsup"]["train_branches"] = ["flow"]
    result = train_selfsup(config_from_dict(config), tmp_path / "run")
    start, tuned = load_model(None)[0], load_model(result.weights)[0]
    for branch, changed in (("segmentation", False), ("flow", True)):
        before = {name: value for name, value in start.state_dict().items() if _in_branch(start, branch, name)}
        after = tuned.state_dict()
        assert before and any(not torch.equal(value, after[name]) for name, value in before.items()) == changed, branch
    config["selfsup"]["train_branches"] = ["motion"]
    with pytest.raises(ConfigError, match="train_branches"):
        config_from_dict(config)


def _in_branch(model: torch.nn.Module, branch: str, name: str) -> bool:
    """Whether state-dict entry ``name`` (parameters and BatchNorm buffers) lives in ``branch``'s modules."""
    prefixes = [prefix for prefix, module in model.named_modules() if module in model.branch_modules(branch)]
    return any(name.startswith(prefix + ".") for prefix in prefixes)


def test_missing_data_root_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "selfsup.yaml"
    config.write_text(yaml.safe_dump(selfsup_config(tmp_path / "absent", 2)))
    assert cli_main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "absent: unlabelled data folder not found" in error
    with pytest.raises(DataFormatError):
        train_selfsup(config_from_dict(selfsup_config(tmp_path / "absent", 2)), tmp_path / "run2")


def test_shipped_config_holds_out_real_sequences_and_trains_on_the_rest(shared_data: Path) -> None:
    sc = load_config(Path("config/train_selfsup_refined_teacher.yaml")).selfsup
    folders = sorted({Path(p).parent.name for pattern in sc.images for p in glob.glob(str(shared_data / pattern))})
    held = [name for name in folders if any(fnmatch(name, pattern) for pattern in sc.holdout)]
    assert held == ["blackswan", "clean_market_5_0002", "cows", "final_market_5_0002", "kite-surf"]
    assert len(folders) - len(held) >= 8  # 7 DAVIS sequences and 4 Sintel pairs remain for training
