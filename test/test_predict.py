"""`jointperception predict` end to end: file set, formats, summary and user errors."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from jointperception.cli import EXIT_USER_ERROR, main
from jointperception.config import ModelConfig
from jointperception.data.bags import BagImageWriter
from jointperception.data.compressed_image import EncodedCompressedImage
from jointperception.data.formats import read_flo, read_mask, write_image, write_mask
from jointperception.data.synthetic import render_sequence
from jointperception.models import build_model
from jointperception.models.weights import save_weights
from jointperception.outputs import OUTPUT_MARKER

HEIGHT, WIDTH = 50, 70  # not multiples of 32, and different from the network size
NETWORK = ["--network-size", "64x48"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "untrained.safetensors"
    save_weights(path, build_model(ModelConfig()), ModelConfig(), {"note": "untrained, for tests"})
    return path


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return render_sequence(3, 4, HEIGHT, WIDTH).frames


@pytest.fixture()
def frame_folder(tmp_path: Path, frames: np.ndarray) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(frames):
        write_image(folder / f"img_{i:03d}.png", frame)
    return folder


def _stems(folder: Path, suffix: str) -> set[str]:
    return {p.stem for p in folder.iterdir() if p.suffix == suffix}


def _predict(inp: Path, out: Path, model: Path, *extra: str) -> int:
    return main(["predict", "--input", str(inp), "--out", str(out), "--model", str(model), *NETWORK, *extra])


def test_predict_folder_writes_exact_file_set(frame_folder: Path, tmp_path: Path, model_file: Path) -> None:
    out = tmp_path / "out"
    assert _predict(frame_folder, out, model_file, "--backend", "torch") == 0
    stems = [f"img_{i:03d}" for i in range(4)]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["flow", "layers", "mask", "occlusion", "summary.json", OUTPUT_MARKER])
    assert _stems(out / "flow", ".flo") == set(stems[:3])
    assert _stems(out / "occlusion", ".png") == set(stems[:3])
    assert _stems(out / "mask", ".png") == set(stems)
    assert _stems(out / "layers", ".png") == set(stems)
    assert sum(1 for _ in out.rglob("*") if _.is_file()) == 3 + 3 + 4 + 4 + 2  # + summary.json, OUTPUT_MARKER

    flow = read_flo(out / "flow" / "img_000.flo")
    assert flow.shape == (HEIGHT, WIDTH, 2) and np.isfinite(flow).all()
    for folder in ("mask", "occlusion", "layers"):
        raw = cv2.imread(str(out / folder / "img_000.png"), cv2.IMREAD_UNCHANGED)
        assert raw.shape == (HEIGHT, WIDTH) and raw.dtype == np.uint8
        if folder != "layers":
            assert set(np.unique(raw)) <= {0, 255}
    layers = cv2.imread(str(out / "layers" / "img_003.png"), cv2.IMREAD_UNCHANGED)
    assert layers.max() < 4 and np.bincount(layers.ravel()).argmax() == 0  # K = 4 layers, 0 the largest

    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == str(model_file)
    assert summary["backend"] == "torch" and summary["device"] == "cpu"
    assert summary["network_size"] == {"width": 64, "height": 48}
    assert summary["input_resolution"] == {"width": WIDTH, "height": HEIGHT}
    assert summary["frame_count"] == 4
    assert [f["stem"] for f in summary["frames"]] == stems
    latencies = [f["latency_ms"] for f in summary["frames"]]
    assert all(v > 0 for v in latencies)
    assert summary["latency_ms"]["mean"] == pytest.approx(np.mean(latencies))
    assert min(latencies) <= summary["latency_ms"]["p50"] <= summary["latency_ms"]["p90"] <= max(latencies)


def test_predict_video(tmp_path: Path, frames: np.ndarray, model_file: Path) -> None:
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (WIDTH, HEIGHT))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    out = tmp_path / "out"
    assert _predict(video, out, model_file) == 0
    stems = {f"{i:05d}" for i in range(4)}
    assert _stems(out / "mask", ".png") == stems
    assert _stems(out / "flow", ".flo") == stems - {"00003"}
    assert read_flo(out / "flow" / "00000.flo").shape == (HEIGHT, WIDTH, 2)
    assert json.loads((out / "summary.json").read_text())["backend"] in ("onnxruntime", "torch")  # auto on CPU


def _write_bag(path: Path, frames: np.ndarray, topic: str, storage: str, codec: str | None = None) -> list[int]:
    """``frames`` on ``topic``: rgb8 Images, or CompressedImages of ``codec``; -> header stamps (ns)."""
    stamps = [1_700_000_000_000_000_000 + i * 33_333_333 for i in range(len(frames))]
    with BagImageWriter(path, storage=storage) as writer:
        for stamp, frame in zip(stamps, frames):
            if codec is None:
                writer.write(topic, stamp, frame, "rgb8")
            else:
                writer.write_compressed(topic, stamp, frame, codec)
    return stamps


@pytest.mark.parametrize("storage, codec", [("mcap", None), ("sqlite3", "png")])
def test_predict_bag_topic_matches_the_same_frames_from_a_folder(
    frame_folder: Path, frames: np.ndarray, tmp_path: Path, model_file: Path, storage: str, codec: str | None
) -> None:
    topic = "/cam/image_raw" if codec is None else "/cam/image_raw/compressed"
    bag = tmp_path / "bag"
    stamps = _write_bag(bag, frames, topic, storage, codec)
    assert _predict(frame_folder, tmp_path / "from_folder", model_file, "--backend", "torch") == 0
    assert _predict(bag, tmp_path / "from_bag", model_file, "--backend", "torch", "--topic", topic) == 0
    stems = [f"{i:05d}_{stamp}" for i, stamp in enumerate(stamps)]
    out = tmp_path / "from_bag"
    assert _stems(out / "mask", ".png") == set(stems)
    assert _stems(out / "flow", ".flo") == set(stems[:-1])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["topic"] == topic and [f["stem"] for f in summary["frames"]] == stems
    for i, stem in enumerate(stems):  # lossless frames: the very same outputs as from the PNG folder
        np.testing.assert_array_equal(read_mask(out / "mask" / f"{stem}.png"),
                                      read_mask(tmp_path / "from_folder" / "mask" / f"img_{i:03d}.png"))
    np.testing.assert_array_equal(read_flo(out / "flow" / f"{stems[0]}.flo"),
                                  read_flo(tmp_path / "from_folder" / "flow" / "img_000.flo"))


def test_predict_jpeg_bag_with_its_only_camera_topic(frames: np.ndarray, tmp_path: Path, model_file: Path) -> None:
    bag = tmp_path / "bag"
    _write_bag(bag, frames, "/cam/image_raw/compressed", "mcap", "jpeg")
    storage_file = next(bag.glob("*.mcap"))
    assert _predict(storage_file, tmp_path / "out", model_file) == 0  # a bare .mcap file, --topic not needed
    assert len(list((tmp_path / "out" / "mask").iterdir())) == len(frames)


def test_bag_input_errors_name_the_fix(frames: np.ndarray, frame_folder: Path, tmp_path: Path, model_file: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    bag = tmp_path / "left_only"
    stamps = _write_bag(bag, frames, "/left/image_raw", "mcap")
    _expect_user_error(capsys, _predict(frame_folder, tmp_path / "o1", model_file, "--topic", "/x"),
                       "--topic applies to a rosbag2 bag")
    _expect_user_error(capsys, _predict(bag, tmp_path / "o2", model_file, "--topic", "/right/image_raw"),
                       "no topic '/right/image_raw'", "/left/image_raw")

    broken = tmp_path / "broken"
    with BagImageWriter(broken) as writer:
        writer.write_compressed("/cam/image_raw/compressed", stamps[0], frames[0], "png")
        writer.write_compressed("/cam/image_raw/compressed", stamps[1], frames[1], "png")
        writer.write_fields("/cam/image_raw/compressed", stamps[2],
                            EncodedCompressedImage("rgb8; png compressed bgr8", b"\x89PNG not really"))
        writer.write("/cam/depth", stamps[0], frames[0][..., 0], "mono8")
    _expect_user_error(capsys, _predict(broken, tmp_path / "o3", model_file),
                       "give --topic", "/cam/depth, /cam/image_raw/compressed")
    code = _predict(broken, tmp_path / "o4", model_file, "--topic", "/cam/image_raw/compressed")
    _expect_user_error(capsys, code, "message 2", str(stamps[2]), "corrupt_data")
    # the pair before the bad frame was written, then removed with the unfinished output (docs/outputs.md)
    assert not (tmp_path / "o4").exists() and not (tmp_path / "o4.partial").exists()


def _expect_user_error(capsys: pytest.CaptureFixture[str], code: int, *needles: str) -> None:
    assert code == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err


def test_empty_folder(tmp_path: Path, model_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    _expect_user_error(capsys, _predict(tmp_path / "empty", tmp_path / "out", model_file), "no image files")


def test_single_frame(tmp_path: Path, frames: np.ndarray, model_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "one"
    folder.mkdir()
    write_image(folder / "a.png", frames[0])
    _expect_user_error(capsys, _predict(folder, tmp_path / "out", model_file), "at least 2 frames")
    assert not (tmp_path / "out").exists()


def test_missing_model_file(frame_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.safetensors"
    _expect_user_error(capsys, _predict(frame_folder, tmp_path / "out", missing), str(missing))


def test_corrupt_model_file(frame_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _expect_user_error(capsys, _predict(frame_folder, tmp_path / "out", junk), str(junk))


def test_cli_process_prints_one_line_and_exits_2(frame_folder: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 8 + b"not a model" * 50)
    env = {k: v for k, v in os.environ.items() if k != "_ROS_WHEELS_BOOTSTRAP_COMPLETE"}
    command = [sys.executable, "-m", "jointperception", "predict", "--input", str(frame_folder)]
    done = subprocess.run(
        command + ["--out", str(tmp_path / "o"), "--model", str(junk)],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == EXIT_USER_ERROR, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert str(junk) in done.stderr and "Traceback" not in done.stderr


def test_tensorrt_request_without_tensorrt_is_refused(
    frame_folder: Path, tmp_path: Path, model_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here")
    code = _predict(frame_folder, tmp_path / "out", model_file, "--backend", "tensorrt")
    _expect_user_error(capsys, code, "tensorrt is not installed")


def test_cuda_without_gpu_is_a_user_error(
    frame_folder: Path, tmp_path: Path, model_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    code = _predict(frame_folder, tmp_path / "out", model_file, "--backend", "torch", "--device", "cuda")
    _expect_user_error(capsys, code, "cuda")


def test_bad_network_size_is_a_usage_error(frame_folder: Path, tmp_path: Path, model_file: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["predict", "--input", str(frame_folder), "--out", str(tmp_path), "--network-size", "64by48"])
    assert info.value.code == 2


def _first_mask_file(tmp_path: Path, mask: np.ndarray) -> Path:
    path = tmp_path / "first_mask.png"
    write_mask(path, mask)
    return path


def test_first_mask_finetunes_then_predicts(frame_folder: Path, tmp_path: Path, model_file: Path) -> None:
    mask = render_sequence(3, 4, HEIGHT, WIDTH).masks[0]  # the ground truth of frame 0 of `frames`
    assert mask.any()
    mask_file, out = _first_mask_file(tmp_path, mask), tmp_path / "out"
    code = _predict(frame_folder, out, model_file, "--backend", "torch", "--first-mask", str(mask_file), "--finetune-iters", "3")
    assert code == 0
    assert _stems(out / "mask", ".png") == {f"img_{i:03d}" for i in range(4)}
    # the node's order: every frame's flow is to the frame it was paired with (i -> i - 1, 0 -> 1)
    assert _stems(out / "flow", ".flo") == {f"img_{i:03d}" for i in range(4)}
    summary = json.loads((out / "summary.json").read_text())
    assert "i -> i - 1" in summary["flow_direction"]
    origins = [row["mask_origin"] for row in summary["frames"]]
    assert origins[0] == "given" and set(origins[1:]) <= {"carried", "reidentified"}
    np.testing.assert_array_equal(read_mask(out / "mask" / "img_000.png"), mask)  # frame 0 publishes the given mask
    finetune = summary["finetune"]
    assert finetune["first_mask"] == str(mask_file) and finetune["skipped"] is None
    assert finetune["iterations"] == finetune["max_iterations"] == 3
    assert finetune["seconds"] > 0 and finetune["first_loss"] > 0 and finetune["last_loss"] > 0
    assert summary["model"] == str(model_file) and summary["backend"] == "torch" and summary["flip_average"] is False
    assert summary["mask_source"] == "fused"  # the motion cue of the followed object


def test_first_mask_of_wrong_size_is_a_user_error(
    frame_folder: Path, tmp_path: Path, model_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mask_file = _first_mask_file(tmp_path, np.ones((HEIGHT - 10, WIDTH + 5), bool))
    code = _predict(frame_folder, tmp_path / "out", model_file, "--first-mask", str(mask_file))
    _expect_user_error(capsys, code, f"{WIDTH + 5}x{HEIGHT - 10}", f"{WIDTH}x{HEIGHT}", str(mask_file))
    assert not (tmp_path / "out").exists()


def test_empty_first_mask_is_a_user_error(
    frame_folder: Path, tmp_path: Path, model_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mask_file = _first_mask_file(tmp_path, np.zeros((HEIGHT, WIDTH), bool))
    code = _predict(frame_folder, tmp_path / "out", model_file, "--first-mask", str(mask_file), "--finetune-iters", "3")
    _expect_user_error(capsys, code, "empty", str(mask_file))
    assert not (tmp_path / "out").exists()


def test_first_mask_needs_the_torch_backend(
    frame_folder: Path, tmp_path: Path, model_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mask_file = _first_mask_file(tmp_path, np.ones((HEIGHT, WIDTH), bool))
    code = _predict(frame_folder, tmp_path / "out", model_file, "--first-mask", str(mask_file), "--backend", "onnxruntime")
    _expect_user_error(capsys, code, "--backend torch")


def test_flip_average_is_recorded(frame_folder: Path, tmp_path: Path, model_file: Path) -> None:
    out = tmp_path / "out"
    assert _predict(frame_folder, out, model_file, "--backend", "torch", "--flip-average", "--mask-source", "motion") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["flip_average"] is True and summary["mask_source"] == "motion"
    assert _stems(out / "flow", ".flo") == {f"img_{i:03d}" for i in range(3)}
