"""Issue #27, part A, as a hostile user tries it: shared numeric ranges, undecodable frames and
masks, a broken params YAML, and model / checkpoint / ONNX / engine files with flipped bytes.
Every command case asserts exit code 2, one stderr line naming the problem, and that nothing
left behind looks complete (no summary.json, no new checkpoint)."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from cli_helpers import one_line_error
from model_helpers import lively_model

from jointperception.cli import EXIT_USER_ERROR, main
from jointperception.config import ModelConfig
from jointperception.data.formats import write_image, write_mask
from jointperception.errors import ModelFileError
from jointperception.export.engine_cache import EngineSpec, engine_problem, write_engine
from jointperception.export.onnx import read_onnx_model
from jointperception.export.onnx_cache import cached_onnx
from jointperception.integrity import HASH_KEY
from jointperception.models.weights import (
    DEFAULT_MODEL_PATH,
    DEFAULT_MOTION_MODEL_PATH,
    load_model,
    load_motion_model,
    save_weights,
)
from jointperception.ranges import FLOAT_RANGES, INT_RANGES
from jointperception.train.checkpoint import LAST_NAME, TMP_SUFFIX, load_checkpoint, save_checkpoint
from jointperception.train.run_start import checkpoint_to_resume

ROOT = Path(__file__).resolve().parents[1]
SIZE = (64, 48)  # (W, H) of the test frames and the network


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("frames")
    rng = np.random.default_rng(0)
    for index in range(3):
        write_image(folder / f"img_{index:03d}.png", rng.integers(0, 255, (SIZE[1], SIZE[0], 3), dtype=np.uint8))
    return folder


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_weights(tmp_path_factory.mktemp("model") / "m.safetensors", lively_model(0), ModelConfig(), {})


def _one_line_error(capsys: pytest.CaptureFixture[str], code: int, *needles: str) -> str:
    assert code == EXIT_USER_ERROR
    return one_line_error(capsys, *needles)


def _predict(frames: Path, out: Path, *extra: str) -> int:
    return main(["predict", "--input", str(frames), "--out", str(out), "--network-size", f"{SIZE[0]}x{SIZE[1]}",
                 "--backend", "torch", *extra])


def _not_complete(out: Path) -> None:
    assert not (out / "summary.json").exists()


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


# ---- one table of ranges, shared by the node and the CLI ------------------------------------

def test_node_parameters_take_their_ranges_from_the_shared_table() -> None:
    pytest.importorskip("rclpy", reason="ROS 2 wheels (rclpy) not installed")
    from jointperception.ros.node_parts import PARAMETERS

    checked = 0
    for name, (_default, descriptor) in PARAMETERS.items():
        if name in INT_RANGES:
            (rule,) = descriptor.integer_range
            assert (rule.from_value, rule.to_value) == INT_RANGES[name], name
            checked += 1
        elif name in FLOAT_RANGES:
            (rule,) = descriptor.floating_point_range
            assert (rule.from_value, rule.to_value) == pytest.approx(FLOAT_RANGES[name]), name
            checked += 1
        else:
            ranged = descriptor.integer_range or descriptor.floating_point_range
            assert not ranged, f"{name}: range not in the table"
    assert checked >= 10


@pytest.mark.parametrize("size", ["7x5", "31x240", "320x31", "4097x240", "320x5000"])
def test_predict_network_size_outside_the_node_range(
    size: str, frames: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        main(["predict", "--input", str(frames), "--out", str(out), "--network-size", size])
    _one_line_error(capsys, info.value.code, "--network-size", "32..4096", size)
    assert not out.exists()


@pytest.mark.parametrize("command, option, value, needle", [
    ("replay", "--network-size", "16x16", "network_width"),
    ("replay", "--mask-threshold", "1.5", "mask_threshold"),
    ("replay", "--occlusion-threshold", "-0.1", "occlusion_threshold"),
    ("replay", "--reset-gap-s", "nan", "reset_gap_s"),
    ("replay", "--reset-gap-s", "soon", "expected a number"),
    ("eval", "--threads", "999", "threads"),
    ("eval", "--network-size", "4096x8", "network_height"),
])
def test_cli_ranges_sweep(
    command: str, option: str, value: str, needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    required = {"replay": [str(tmp_path / "bag"), "--out", str(tmp_path / "out")], "eval": []}[command]
    with pytest.raises(SystemExit) as info:
        main([command, *required, option, value])
    _one_line_error(capsys, info.value.code, option, needle)
    assert not (tmp_path / "out").exists()


def test_predict_inside_the_range_still_runs(frames: Path, model_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _predict(frames, out, "--model", str(model_file)) == 0
    assert json.loads((out / "summary.json").read_text())["frame_count"] == 3


# ---- undecodable frames and masks -----------------------------------------------------------

def _huge_png(path: Path, side: int) -> Path:
    """A valid small PNG whose header declares side x side RGB pixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("kind", ["zero_bytes", "beyond_pixel_limit"])
def test_undecodable_first_frame(
    kind: str, frames: Path, model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "frames"
    shutil.copytree(frames, folder)
    bad = folder / "img_000.png"
    if kind == "zero_bytes":
        bad.write_bytes(b"")
    else:
        _huge_png(bad, 100_000)  # 10^10 pixels, beyond OpenCV's CV_IO_MAX_IMAGE_PIXELS
    out = tmp_path / "out"
    code = _predict(folder, out, "--model", str(model_file))
    # beyond the pixel limit: refused from its header (data/image_header.py) before OpenCV sees it
    expected = "empty file" if kind == "zero_bytes" else "more than the 100000000 allowed"
    _one_line_error(capsys, code, str(bad), expected)
    _not_complete(out)


@pytest.mark.parametrize("kind", ["zero_bytes", "beyond_pixel_limit"])
def test_undecodable_first_mask(
    kind: str, frames: Path, model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mask = tmp_path / "first_mask.png"
    if kind == "zero_bytes":
        mask.write_bytes(b"")
    else:
        _huge_png(mask, 100_000)
    out = tmp_path / "out"
    code = _predict(frames, out, "--model", str(model_file), "--first-mask", str(mask), "--finetune-iters", "1")
    _one_line_error(capsys, code, str(mask))
    _not_complete(out)


# ---- a broken params YAML for the node ------------------------------------------------------

@pytest.mark.parametrize("content, needle", [
    (b"perception_node:\n  ros__parameters:\n    network_width: [1, 2\n", "not valid YAML at line"),
    (b"perception_node:\n  ros__parameters:\n\tnetwork_width: 64\n", "not valid YAML"),
    (b"\xff\xfe\x00garbage", "not UTF-8 text"),
])
def test_node_with_a_broken_params_yaml(content: bytes, needle: str, tmp_path: Path) -> None:
    pytest.importorskip("rclpy", reason="ROS 2 wheels (rclpy) not installed")
    params = tmp_path / "params.yaml"
    params.write_bytes(content)
    done = subprocess.run(
        [sys.executable, "-m", "jointperception.ros.perception_node", "--ros-args", "--params-file", str(params)],
        capture_output=True, text=True, timeout=120, env=os.environ.copy(),  # conftest: loopback, own domain
    )
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("perception_node: error:") and str(params) in err and needle in err, err


# ---- integrity: content hashes written at save, checked at load ------------------------------

def _safetensors_data_offset(path: Path) -> tuple[int, int]:
    """(start, length) of the tensor bytes of a safetensors file."""
    raw = path.read_bytes()
    start = 8 + int.from_bytes(raw[:8], "little")
    return start, len(raw) - start


@pytest.mark.parametrize("source", ["saved", "bundled", "bundled_motion"])
def test_safetensors_with_a_flipped_byte(source: str, model_file: Path, tmp_path: Path) -> None:
    original = {"saved": model_file, "bundled": DEFAULT_MODEL_PATH, "bundled_motion": DEFAULT_MOTION_MODEL_PATH}[source]
    copy = tmp_path / original.name
    shutil.copy(original, copy)
    load = load_motion_model if source == "bundled_motion" else load_model
    load(copy)  # intact: loads, its hash checked
    start, length = _safetensors_data_offset(copy)
    _flip(copy, start + length // 2)
    with pytest.raises(ModelFileError, match="corrupt") as info:
        load(copy)
    assert str(copy) in str(info.value)


def test_predict_with_a_flipped_model(
    frames: Path, model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "m.safetensors"
    shutil.copy(model_file, model)
    start, length = _safetensors_data_offset(model)
    _flip(model, start + 3 * length // 4)
    out = tmp_path / "out"
    _one_line_error(capsys, _predict(frames, out, "--model", str(model)), str(model), "corrupt")
    _not_complete(out)


def test_a_model_saved_without_a_hash_loads_with_a_warning(
    model_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(model_file), "pt") as handle:
        header = {key: value for key, value in handle.metadata().items() if key != HASH_KEY}
    older = tmp_path / "older.safetensors"
    save_file(load_file(str(model_file)), str(older), metadata=header)
    with caplog.at_level(logging.WARNING):
        load_model(older)
    assert "no content hash" in caplog.text and str(older) in caplog.text


BUNDLED = [DEFAULT_MODEL_PATH.name, "jointnet_tiny_selfsup.safetensors", DEFAULT_MOTION_MODEL_PATH.name]


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_models_carry_their_hash(name: str, caplog: pytest.LogCaptureFixture) -> None:
    from safetensors import safe_open

    with safe_open(str(ROOT / "models" / name), "pt") as handle:
        assert len(handle.metadata()[HASH_KEY]) == 64
    with caplog.at_level(logging.WARNING):
        (load_motion_model if name == DEFAULT_MOTION_MODEL_PATH.name else load_model)(ROOT / "models" / name)
    assert "no content hash" not in caplog.text


def _largest_zip_member_offset(path: Path) -> tuple[int, int]:
    """(start, length) of the stored bytes of the largest member of a torch.save zip."""
    with zipfile.ZipFile(path) as archive:
        member = max(archive.infolist(), key=lambda info: info.file_size)
    raw = path.read_bytes()
    name_length, extra_length = struct.unpack_from("<HH", raw, member.header_offset + 26)
    return member.header_offset + 30 + name_length + extra_length, member.compress_size


def _checkpoint(path: Path) -> Path:
    model = lively_model(1)
    save_checkpoint(path, {"model": model.state_dict(), "model_args": dataclasses.asdict(ModelConfig()),
                           "config": {}, "step": 3, "metrics": {"epe": 1.5}})
    return path


def test_checkpoint_with_a_flipped_byte(frames: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoint = _checkpoint(tmp_path / "model.pt")
    assert load_checkpoint(checkpoint)["step"] == 3  # intact: loads
    start, length = _largest_zip_member_offset(checkpoint)
    _flip(checkpoint, start + length // 2)
    with pytest.raises(ModelFileError, match="corrupt"):
        load_checkpoint(checkpoint)
    out = tmp_path / "out"
    _one_line_error(capsys, _predict(frames, out, "--model", str(checkpoint)), str(checkpoint), "corrupt")
    _not_complete(out)


@pytest.mark.parametrize("kind", ["pickled_object", "random_bytes", "plain_pickle"])
def test_refused_pickles_do_not_advise_disabling_weights_only(
    kind: str, frames: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pickle

    bad = tmp_path / "model.pt"
    if kind == "pickled_object":
        torch.save({"model": logging.getLogger("x"), "model_args": {}}, bad)
    elif kind == "random_bytes":
        bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    else:
        bad.write_bytes(pickle.dumps({"model": subprocess.Popen}))
    out = tmp_path / "out"
    err = _one_line_error(capsys, _predict(frames, out, "--model", str(bad)), str(bad), "refused")
    assert "weights_only" not in err and "trust" not in err
    _not_complete(out)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real one-step training run of config/train_smoke.yaml (about 20 s of CPU)."""
    run_dir = tmp_path_factory.mktemp("smoke") / "run"
    assert main(["train", "--config", str(ROOT / "config" / "train_smoke.yaml"), "--out", str(run_dir),
                 "--max-steps", "1", "--device", "cpu"]) == 0
    return run_dir


def test_train_resume_from_a_flipped_checkpoint_and_stale_temporaries(
    smoke_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run, run_dir)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])  # a pid whose process has ended
    gone.wait()
    stale = run_dir / f".{LAST_NAME}.{gone.pid}{TMP_SUFFIX}"
    stale.write_bytes(b"half a checkpoint")
    live = run_dir / f".best.pt.{os.getpid()}{TMP_SUFFIX}"  # a writer still running keeps its file
    live.write_bytes(b"being written")
    last = run_dir / LAST_NAME
    start, length = _largest_zip_member_offset(last)
    _flip(last, start + length // 3)
    before = last.read_bytes()
    code = main(["train", "--config", str(ROOT / "config" / "train_smoke.yaml"), "--out", str(run_dir),
                 "--resume", "auto", "--device", "cpu"])
    _one_line_error(capsys, code, str(last), "corrupt")
    assert last.read_bytes() == before  # nothing overwritten by a run that did not start
    assert not stale.exists() and live.exists()


def test_stale_temporaries_are_removed_at_the_start_of_a_fresh_run(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    tmp_path.mkdir(exist_ok=True)
    stale = [tmp_path / f".{name}.{gone.pid}{TMP_SUFFIX}" for name in (LAST_NAME, "best.pt", "best.safetensors")]
    for path in stale:
        path.write_bytes(b"x")
    unrelated = tmp_path / "notes.tmp"
    unrelated.write_bytes(b"keep")
    assert checkpoint_to_resume(tmp_path, None) is None
    assert not any(path.exists() for path in stale) and unrelated.exists()


@pytest.mark.slow
def test_onnx_with_a_flipped_weight(model_file: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    exported = cached_onnx(model_file, (96, 64), cache_dir=tmp_path_factory.getbasetemp() / "onnx-cache-hostile")
    assert len(read_onnx_model(exported).metadata[HASH_KEY]) == 64
    copy = tmp_path / "model.onnx"
    shutil.copy(exported, copy)
    proto = onnx.load_model(str(copy))
    weight = max(proto.graph.initializer, key=lambda tensor: len(tensor.raw_data)).raw_data
    offset = copy.read_bytes().find(weight)
    assert offset > 0
    _flip(copy, offset + len(weight) // 2)
    with pytest.raises(ModelFileError, match="corrupt") as info:
        read_onnx_model(copy)
    assert str(copy) in str(info.value)


def test_engine_with_a_flipped_byte(tmp_path: Path) -> None:
    """TensorRT cannot run here: the plan is a stand-in byte string; the sidecar hash is real."""
    spec = EngineSpec(onnx_sha256="0" * 64, trt_version="10.0.0", gpu_name="stand-in", compute_capability=(9, 0),
                      precision="fp32", input_shape=(1, 3, 64, 96))
    engine = write_engine(tmp_path / "model.engine", os.urandom(4096), spec, {})
    assert engine_problem(engine, spec.to_dict()) is None
    _flip(engine, 2048)
    assert "corrupt" in engine_problem(engine, spec.to_dict())
