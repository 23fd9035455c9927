"""Unlabelled real-video flow for MotionLayerNet (data/video_flows.py): the bundled joint model's
flow on the motion grid, its sign and scale, crops, caching, hold-out, the trainer using it, and
a trained motion net fused in place of the bundled one (create_backend motion_model)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from jointperception.cli import main
from jointperception.config import config_from_dict
from jointperception.data.formats import write_image
from jointperception.data.video_flows import load_or_build_video_flows, predict_video_flows, video_sequences
from jointperception.data.video_pairs import FrameSequence, VideoPairDataset
from jointperception.errors import ConfigError, InputError
from jointperception.runtime.backends import create_backend
from jointperception.runtime.pipeline import preprocess

SHIFT = 4  # px per frame at the network size


def drifting_frames(count: int, height: int, width: int) -> list[np.ndarray]:
    """Frames of one smooth random texture moving SHIFT px right per frame: (H, W, 3) uint8."""
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.uniform(0, 255, (height, width + SHIFT * count, 3)).astype(np.float32), (0, 0), 2.0)
    texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return [np.ascontiguousarray(texture[:, SHIFT * (count - k):SHIFT * (count - k) + width]) for k in range(count)]


def write_sequence(folder, frames) -> None:
    folder.mkdir(parents=True)
    for k, frame in enumerate(frames):
        write_image(folder / f"{k:05d}.png", frame)


def test_flow_is_on_the_motion_grid_with_the_pair_sign():
    # 320 px wide network -> the fused graph pools the flow by 2 for the motion net: 4 px -> 2 px
    sequences = [FrameSequence("drift", tuple(drifting_frames(4, 240, 320)))]
    flows = predict_video_flows(sequences, 4, seed=3, joint_model=None, network_size=(320, 240), height=96, width=128)
    assert flows.shape == (4, 2, 96, 128) and torch.isfinite(flows).all()
    pairs = VideoPairDataset(sequences, 4, 3, 240, 320, max_dt=1)
    for index, flow in enumerate(flows):
        _, first, second = pairs.sample_indices(index)
        u, v = flow[0, 24:72, 32:96].median().item(), flow[1, 24:72, 32:96].median().item()
        assert u == pytest.approx(np.sign(second - first) * SHIFT / 2, abs=0.6)
        assert abs(v) < 0.6


def test_cache_is_reused_and_rebuilt_when_the_request_changes(tmp_path):
    write_sequence(tmp_path / "data" / "walk", drifting_frames(3, 64, 96))
    write_sequence(tmp_path / "data" / "kept_out", drifting_frames(3, 64, 96))
    cache = tmp_path / "flow_video.pt"
    request = dict(root=str(tmp_path / "data"), patterns=["*"], holdout=["kept_*"], count=3, seed=0,
                   joint_model=None, network_size=(96, 64), height=48, width=80)
    first = load_or_build_video_flows(cache, **request)
    written = cache.stat().st_mtime_ns
    assert first.shape == (3, 2, 48, 80)
    assert torch.equal(load_or_build_video_flows(cache, **request), first) and cache.stat().st_mtime_ns == written
    other = load_or_build_video_flows(cache, **(request | {"seed": 1}))
    assert other.shape == first.shape and cache.stat().st_mtime_ns != written
    assert load_or_build_video_flows(tmp_path / "none.pt", **(request | {"count": 0})).shape == (0, 2, 48, 80)
    assert not (tmp_path / "none.pt").exists()


def test_held_out_sequences_are_left_out_and_errors_name_the_key(tmp_path):
    write_sequence(tmp_path / "walk", drifting_frames(2, 32, 48))
    write_sequence(tmp_path / "cows", drifting_frames(2, 32, 48))
    assert [s.name for s in video_sequences(tmp_path, ["*"], ["cows"], (48, 32))] == ["walk"]
    with pytest.raises(ConfigError, match="motion.video_images"):
        video_sequences(tmp_path, ["walk"], ["wa*"], (48, 32))
    with pytest.raises(ConfigError, match="motion.video_network_width/height"):
        predict_video_flows(video_sequences(tmp_path, ["walk"], [], (48, 32)), 1, 0, None, (48, 32), 64, 96)
    with pytest.raises(ConfigError, match="motion.video_images"):
        config_from_dict({"motion": {"video_flow_samples": 10}})
    with pytest.raises(ConfigError, match="motion.video_network_width"):
        config_from_dict({"motion": {"video_network_width": 0}})


def test_motion_training_draws_on_video_flow(tmp_path):
    write_sequence(tmp_path / "frames" / "walk", drifting_frames(3, 64, 96))
    config = tmp_path / "motion.yaml"
    config.write_text(f"""
data: {{height: 64, width: 96, train_samples: 4, val_samples: 2, max_objects: 2, max_translation: 4.0, num_workers: 0}}
train: {{mode: motion_layers, max_steps: 2, batch_size: 2, warmup_steps: 0, eval_every: 2, log_every: 1}}
motion: {{num_layers: 3, base_width: 8, predicted_flow_samples: 0, video_flow_samples: 3, video_root: "{tmp_path / 'frames'}",
          video_images: [walk], video_network_width: 96, video_network_height: 64}}
""")
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 0
    video = torch.load(tmp_path / "run" / "flow_video.pt", weights_only=True)["tensors"]["flow"]
    assert video.shape == (3, 2, 64, 96) and video[0, 0].abs().median() > 1.0  # the texture moves 4 px per frame
    # the trained 3-layer net, fused behind the bundled joint model instead of the bundled 4-layer one
    frames = drifting_frames(2, 64, 96)
    backend = create_backend("torch", motion_model=tmp_path / "run" / "best.safetensors")
    outputs = backend.infer(preprocess(frames[0], (96, 64)), preprocess(frames[1], (96, 64)))
    assert outputs["layer_prob"].shape == (1, 3, 64, 96)
    with pytest.raises(InputError, match="needs backend torch"):
        create_backend("onnxruntime", motion_model=tmp_path / "run" / "best.safetensors")
