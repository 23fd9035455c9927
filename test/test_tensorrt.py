"""TensorRT: engine cache key and sidecar validation, input shapes, calibration data, the
build-engine command and auto selection without TensorRT; and, where TensorRT and a CUDA GPU
exist, real builds (fp32 parity with ONNX Runtime, fp16, int8 with calibration) and rebuilds."""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import logging
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from jointperception import cli
from jointperception.config import ModelConfig
from jointperception.data.bags import BagImageWriter
from jointperception.data.formats import write_image
from jointperception.data.synthetic import render_sequence
from jointperception.errors import InputError
from jointperception.export import tensorrt as tensorrt_export
from jointperception.export.engine_cache import (
    SPEC_FIELDS,
    EngineCache,
    EngineSpec,
    copy_engine,
    engine_cache_key,
    engine_problem,
    resolve_input_shape,
    sidecar_path,
    write_engine,
)
from jointperception.export.tensorrt import (
    TensorRTEngineError,
    TensorRTUnavailableError,
)
from jointperception.models import build_model
from jointperception.models.blocks import FlowPredictor
from jointperception.models.perception import INPUT_NAMES, OUTPUT_NAMES
from jointperception.models.weights import save_weights
from jointperception.runtime import onnxruntime_backend
from jointperception.runtime.backends import TorchBackend, create_backend
from jointperception.runtime.pipeline import preprocess

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
needs_no_tensorrt = pytest.mark.skipif(HAS_TENSORRT, reason="tensorrt is installed here")
needs_tensorrt_gpu = pytest.mark.skipif(
    not HAS_TENSORRT or not torch.cuda.is_available(),
    reason="needs tensorrt and a CUDA GPU (tensorrt cannot be installed on the development machine)",
)
SPEC = EngineSpec("ab" * 32, "10.3.0", "NVIDIA H100 80GB HBM3", (9, 0), "fp16", (1, 3, 64, 96))
OTHER_VALUES = {"onnx_sha256": "cd" * 32, "trt_version": "10.0.1", "gpu_name": "NVIDIA GeForce RTX 4090",
                "compute_capability": (8, 9), "precision": "fp32", "input_shape": (1, 3, 256, 320)}
INPUT_SIZE = (96, 64)  # (W, H) of the engines built in the GPU tests


def spec_fields(spec: EngineSpec) -> dict[str, object]:
    return {name: getattr(spec, name) for name in SPEC_FIELDS}


def tiny_onnx(path: Path, height: int | str, width: int | str) -> Path:
    """A graph with our input and output names (Identity / Sigmoid nodes): enough for the shape logic."""
    shape = [1, 3, height, width]
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name in INPUT_NAMES]
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name in OUTPUT_NAMES]
    nodes = [helper.make_node("Sigmoid", ["image1"], ["mask_prob"]),
             helper.make_node("Sub", ["image2", "image1"], ["flow"]),
             helper.make_node("Sigmoid", ["image2"], ["occlusion_prob"]),
             helper.make_node("Softmax", ["image1"], ["layer_prob"], axis=1)]
    graph = helper.make_graph(nodes, "tiny", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.save_model(model, str(path))
    return path


def test_cache_key_is_stable_and_changes_with_every_field() -> None:
    key = engine_cache_key(**spec_fields(SPEC))
    assert key == SPEC.key() and len(key) == 32 and int(key, 16) >= 0
    as_lists = {**spec_fields(SPEC), "compute_capability": [9, 0], "input_shape": [1, 3, 64, 96]}
    assert engine_cache_key(**as_lists) == key  # JSON round trips (lists) give the same key
    keys = {key}
    for name, value in OTHER_VALUES.items():
        changed = engine_cache_key(**{**spec_fields(SPEC), name: value})
        assert changed != key, name
        keys.add(changed)
    assert len(keys) == 1 + len(OTHER_VALUES)


@pytest.mark.parametrize("field", SPEC_FIELDS)
def test_lookup_rejects_an_entry_recorded_for_another_runtime(
    tmp_path: Path, field: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = EngineCache(tmp_path)
    plan = b"serialized plan bytes" * 10
    path = write_engine(cache.engine_path(SPEC), plan, SPEC, {"note": "test"})
    with caplog.at_level(logging.INFO, logger="jointperception.export.engine_cache"):
        assert cache.lookup(SPEC) == path
    assert "using cached TensorRT engine" in caplog.text
    assert json.loads(sidecar_path(path).read_text())["engine_sha256"] == hashlib.sha256(plan).hexdigest()
    foreign = dataclasses.replace(SPEC, **{field: OTHER_VALUES[field]})
    assert cache.engine_path(foreign) != path  # the name carries the key ...
    write_engine(path, plan, foreign, {})  # ... yet a file copied under this name must not pass
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="jointperception.export.engine_cache"):
        assert cache.lookup(SPEC) is None
    assert f"built with {field}" in caplog.text and "rebuilding it" in caplog.text


def test_lookup_rejects_corrupt_engines_and_sidecars(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = EngineCache(tmp_path)
    with caplog.at_level(logging.INFO, logger="jointperception.export.engine_cache"):
        assert cache.lookup(SPEC) is None
    assert "no cached TensorRT engine for fp16 96x64 on NVIDIA H100" in caplog.text
    plan = bytes(range(256)) * 4
    path = write_engine(cache.engine_path(SPEC), plan, SPEC, {})
    cases = {
        "engine file is corrupt": lambda: path.write_bytes(plan[: len(plan) // 2]),  # truncated
        "is corrupt (JSONDecodeError": lambda: sidecar_path(path).write_text("{ not json"),
        "no sidecar": lambda: sidecar_path(path).unlink(),
        "engine file is missing": lambda: path.unlink(),
    }
    for expected, damage in cases.items():
        write_engine(path, plan, SPEC, {})
        assert cache.lookup(SPEC) == path
        damage()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="jointperception.export.engine_cache"):
            assert cache.lookup(SPEC) is None, expected
        assert expected in caplog.text and "unusable" in caplog.text


def test_copied_engine_keeps_its_sidecar(tmp_path: Path) -> None:
    source = write_engine(tmp_path / "a.engine", b"plan", SPEC, {})
    target = copy_engine(source, tmp_path / "out" / "b.plan")
    assert target.read_bytes() == b"plan"
    assert engine_problem(target, {"trt_version": "10.3.0"}) is None
    assert "10.3.0" in engine_problem(target, {"trt_version": "10.5.0"})


def test_input_shape_comes_from_a_static_onnx_or_the_requested_size(tmp_path: Path) -> None:
    static = tiny_onnx(tmp_path / "static.onnx", 64, 96)
    dynamic = tiny_onnx(tmp_path / "dynamic.onnx", "height", "width")
    assert resolve_input_shape(static, None) == (1, 3, 64, 96)
    assert resolve_input_shape(static, (96, 64)) == (1, 3, 64, 96)
    with pytest.raises(InputError, match=r"exported for input \(96, 64\)"):
        resolve_input_shape(static, (128, 64))
    assert resolve_input_shape(dynamic, (320, 256)) == (1, 3, 256, 320)
    with pytest.raises(InputError, match="dynamic-shape ONNX"):
        resolve_input_shape(dynamic, None)
    with pytest.raises(InputError, match="multiples of 32"):
        resolve_input_shape(dynamic, (100, 64))


def test_calibration_pairs_are_consecutive_pipeline_inputs() -> None:
    from jointperception.commands.build_engine import calibration_pairs

    frames = list(render_sequence(5, 4, 60, 90).frames)
    pairs = list(calibration_pairs(frames, (90, 60)))
    assert len(pairs) == 3
    for index, (first, second) in enumerate(pairs):
        assert first.shape == second.shape == (1, 3, 64, 96) and first.dtype == np.float32
        np.testing.assert_array_equal(first, preprocess(frames[index], (90, 60)))
        np.testing.assert_array_equal(second, preprocess(frames[index + 1], (90, 60)))
    assert not np.array_equal(pairs[0][0], pairs[0][1])


def test_calibration_frames_from_folder_and_bag(tmp_path: Path) -> None:
    from jointperception.commands.build_engine import read_calibration_frames

    frames = render_sequence(6, 3, 48, 64).frames
    folder = tmp_path / "frames"
    folder.mkdir()
    for index, frame in enumerate(frames):
        write_image(folder / f"{index:03d}.png", frame)
    assert len(read_calibration_frames(folder, None, 10)) == 3
    first_two = read_calibration_frames(folder, None, 2)
    assert len(first_two) == 2 and np.array_equal(first_two[1], frames[1])
    with pytest.raises(InputError, match="--topic applies to a rosbag2 bag"):
        read_calibration_frames(folder, "/camera/image", 10)
    bag = tmp_path / "bag"
    with BagImageWriter(bag) as writer:
        for index, frame in enumerate(frames):
            writer.write("/camera/image", 1_000_000 * (index + 1), frame, "rgb8")
            writer.write("/camera/depth", 1_000_000 * (index + 1), frame[..., 0], "mono8")
    with pytest.raises(InputError, match="give --topic.*/camera/depth, /camera/image"):
        read_calibration_frames(bag, None, 10)
    from_bag = read_calibration_frames(bag, "/camera/image", 10)
    assert len(from_bag) == 3 and all(np.array_equal(a, b) for a, b in zip(from_bag, frames))
    with pytest.raises(InputError, match="at least 2 frames"):
        read_calibration_frames(bag, "/camera/image", 1)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_model(ModelConfig())
    for module in model.modules():
        if isinstance(module, FlowPredictor):  # flow heads that predict pixels, not ~0
            torch.nn.init.normal_(module.conv.weight, std=0.05)
    return save_weights(tmp_path_factory.mktemp("trt") / "tiny.safetensors", model.eval(), ModelConfig(), {})


def _run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    code = cli.main(["build-engine", *argv])
    return code, capsys.readouterr().err.strip().splitlines()


@needs_no_tensorrt
def test_build_engine_without_tensorrt_is_a_one_line_error(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = _run_cli(capsys, "--model", str(weights), "--precision", "fp16", "--cache-dir", str(tmp_path / "c"))
    assert code == 2 and len(lines) == 1
    assert lines[0] == "jointperception build-engine: error: tensorrt is not installed"
    assert not (tmp_path / "c").exists()  # it failed before exporting anything


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--calibration", "{tmp}"], "--calibration and --topic apply to --precision int8 only"),
        (["--precision", "int8", "--topic", "/image"], "--topic needs --calibration BAG"),
        (["--precision", "int8", "--calibration", "{tmp}/missing"], "missing: no such file or folder"),
        (["--out", "engine.onnx"], "--out must end in one of .engine, .plan, .trt"),
        (["--model", "{tmp}/absent.safetensors"], "absent.safetensors: model file not found"),
    ],
)
def test_build_engine_checks_its_arguments_before_anything_slow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], weights: Path, extra: list[str], message: str
) -> None:
    code, lines = _run_cli(capsys, "--model", str(weights), *[a.format(tmp=tmp_path) for a in extra])
    assert code == 2 and len(lines) == 1 and message in lines[0]


@needs_no_tensorrt
def test_auto_says_tensorrt_was_skipped_because_it_is_not_installed(
    weights: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(onnxruntime_backend, "unavailable_reason", lambda device: "onnxruntime is not installed")
    with caplog.at_level(logging.INFO, logger="jointperception.runtime.backends"):
        backend = create_backend("auto", weights, "cpu", input_size=INPUT_SIZE)
    assert isinstance(backend, TorchBackend)
    [line] = [r.getMessage() for r in caplog.records if r.name == "jointperception.runtime.backends"]
    assert line.startswith("backend auto: torch-cpu (order tensorrt > onnxruntime-cuda > ")
    assert "skipped tensorrt: tensorrt is not installed; onnxruntime-cuda: device is cpu" in line
    with pytest.raises(InputError, match="backend tensorrt unavailable: tensorrt is not installed"):
        create_backend("tensorrt", weights, "cuda", input_size=INPUT_SIZE)


@needs_no_tensorrt
def test_a_tensorrt_that_cannot_be_imported_is_skipped_by_auto_and_refused_explicitly(
    weights: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """As when only the PyPI stub is installed: the package is found, its import fails."""
    monkeypatch.setattr(tensorrt_export, "unavailable_reason", lambda device: None)
    monkeypatch.setattr(onnxruntime_backend, "unavailable_reason", lambda device: "onnxruntime is not installed")
    with caplog.at_level(logging.INFO, logger="jointperception.runtime.backends"):
        backend = create_backend("auto", weights, "cuda:0", input_size=INPUT_SIZE)
    assert isinstance(backend, TorchBackend)
    assert "tensorrt: tensorrt cannot be imported (No module named 'tensorrt')" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="jointperception.runtime.backends"):
        create_backend("auto", weights, "cuda:0")
    assert "tensorrt: no input size given (TensorRT builds one engine per size)" in caplog.text
    with pytest.raises(TensorRTUnavailableError, match="tensorrt cannot be imported"):
        create_backend("tensorrt", weights, "cuda", input_size=INPUT_SIZE)


# ---- with TensorRT and a CUDA GPU ----------------------------------------------------------


@pytest.fixture(scope="module")
def gpu(weights: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A static ONNX export, its fp32 engine, and ONNX Runtime on the same file as reference."""
    from jointperception.export.onnx_cache import cached_onnx
    from jointperception.runtime.onnxruntime_backend import OnnxRuntimeBackend
    from jointperception.runtime.tensorrt_backend import TensorRTBackend

    cache = tmp_path_factory.mktemp("trt-cache")
    onnx_path = cached_onnx(weights, INPUT_SIZE, cache_dir=cache)
    frames = render_sequence(7, 8, 60, 90).frames
    inputs = (preprocess(frames[0], INPUT_SIZE), preprocess(frames[1], INPUT_SIZE))
    fp32 = TensorRTBackend(onnx_path, "cuda", input_size=INPUT_SIZE, cache_dir=cache)
    reference = OnnxRuntimeBackend(onnx_path, "cpu", threads=1).infer(*inputs)
    return SimpleNamespace(cache=cache, onnx=onnx_path, frames=frames, inputs=inputs, fp32=fp32, reference=reference)


@needs_tensorrt_gpu
def test_fp32_engine_matches_onnxruntime(gpu: SimpleNamespace) -> None:
    ours = gpu.fp32.infer(*gpu.inputs)
    assert gpu.fp32.input_size == INPUT_SIZE and np.abs(gpu.reference["flow"]).max() > 0.5
    for name in OUTPUT_NAMES:
        assert ours[name].shape == gpu.reference[name].shape and ours[name].dtype == np.float32
    assert np.abs(ours["flow"] - gpu.reference["flow"]).max() <= 2e-3  # px; TF32 is off in fp32 builds
    for name in ("mask_prob", "occlusion_prob"):
        assert np.abs(ours[name] - gpu.reference[name]).max() <= 1e-3, name
        assert np.mean((ours[name] > 0.5) == (gpu.reference[name] > 0.5)) >= 0.999, name
    record = json.loads(sidecar_path(gpu.fp32.engine_path).read_text())
    assert record["trt_version"] == tensorrt_export.import_tensorrt().__version__
    assert record["input_shape"] == [1, 3, INPUT_SIZE[1], INPUT_SIZE[0]] and record["precision"] == "fp32"


@needs_tensorrt_gpu
def test_motion_layer_head_alone_matches_the_engine(gpu: SimpleNamespace) -> None:
    """The head the pipeline runs on the refined flow (eager torch on the GPU) is the engine's own."""
    fused = gpu.fp32.infer(*gpu.inputs)
    np.testing.assert_allclose(gpu.fp32.motion_layers(fused["flow"]), fused["layer_prob"], atol=1e-3)
    joint = gpu.fp32.infer(*gpu.inputs, layers=False)
    assert "layer_prob" not in joint
    np.testing.assert_allclose(joint["flow"], fused["flow"], atol=1e-5)


@needs_tensorrt_gpu
def test_outputs_are_fresh_every_call(gpu: SimpleNamespace) -> None:
    first = gpu.fp32.infer(*gpu.inputs)
    kept = {name: value.copy() for name, value in first.items()}
    second = gpu.fp32.infer(gpu.inputs[1], gpu.inputs[0])
    assert not np.array_equal(second["flow"], kept["flow"])
    for name, value in first.items():
        np.testing.assert_array_equal(value, kept[name])
    with pytest.raises(InputError, match="the engine takes"):
        gpu.fp32.infer(np.zeros((1, 3, 32, 32), np.float32), np.zeros((1, 3, 32, 32), np.float32))


@needs_tensorrt_gpu
def test_cached_engine_is_reused_and_a_bad_one_rebuilt(gpu: SimpleNamespace, caplog: pytest.LogCaptureFixture) -> None:
    from jointperception.runtime.tensorrt_backend import TensorRTBackend

    path = gpu.fp32.engine_path
    with caplog.at_level(logging.INFO, logger="jointperception.export.engine_cache"):
        again = TensorRTBackend(gpu.onnx, "cuda", input_size=INPUT_SIZE, cache_dir=gpu.cache)
    assert again.engine_path == path and "using cached TensorRT engine" in caplog.text

    def truncate_engine() -> None:
        plan = path.read_bytes()
        path.write_bytes(plan[: len(plan) // 2])

    def claim_another_tensorrt() -> None:
        record = json.loads(sidecar_path(path).read_text())
        sidecar_path(path).write_text(json.dumps({**record, "trt_version": "9.0.0"}))

    damages = [(truncate_engine, "engine file is corrupt"), (claim_another_tensorrt, "built with trt_version")]
    for damage, reason in damages:
        damage()
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="jointperception.export"):
            rebuilt = TensorRTBackend(gpu.onnx, "cuda", input_size=INPUT_SIZE, cache_dir=gpu.cache)
        assert reason in caplog.text and "built fp32" in caplog.text
        flow = rebuilt.infer(*gpu.inputs)["flow"]
        np.testing.assert_allclose(flow, gpu.fp32.infer(*gpu.inputs)["flow"], atol=1e-4)


@needs_tensorrt_gpu
def test_explicit_engine_for_another_tensorrt_or_corrupt_is_refused(gpu: SimpleNamespace, tmp_path: Path) -> None:
    from jointperception.runtime.tensorrt_backend import TensorRTBackend

    copy = copy_engine(gpu.fp32.engine_path, tmp_path / "model.engine")
    assert TensorRTBackend(copy, "cuda").input_size == INPUT_SIZE
    record = json.loads(sidecar_path(copy).read_text())
    sidecar_path(copy).write_text(json.dumps({**record, "gpu_name": "Another GPU"}))
    with pytest.raises(TensorRTEngineError, match="built with gpu_name 'Another GPU'.*build-engine"):
        TensorRTBackend(copy, "cuda")
    sidecar_path(copy).unlink()
    copy.write_bytes(b"not an engine" * 100)
    with pytest.raises(TensorRTEngineError, match="cannot load this engine"):
        TensorRTBackend(copy, "cuda")


@needs_tensorrt_gpu
def test_fp16_engine_stays_close_to_fp32(gpu: SimpleNamespace) -> None:
    from jointperception.runtime.tensorrt_backend import TensorRTBackend

    fp16 = TensorRTBackend(gpu.onnx, "cuda", precision="fp16", input_size=INPUT_SIZE, cache_dir=gpu.cache)
    assert fp16.engine_path != gpu.fp32.engine_path
    ours = fp16.infer(*gpu.inputs)
    assert np.abs(ours["flow"] - gpu.reference["flow"]).mean() <= 0.05
    assert np.abs(ours["mask_prob"] - gpu.reference["mask_prob"]).mean() <= 0.01


@needs_tensorrt_gpu
def test_int8_engine_from_calibration_frames(
    gpu: SimpleNamespace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jointperception.runtime.tensorrt_backend import TensorRTBackend

    folder = tmp_path / "calibration"
    folder.mkdir()
    for index, frame in enumerate(gpu.frames):
        write_image(folder / f"{index:03d}.png", frame)
    out = tmp_path / "int8.engine"
    code = cli.main(["build-engine", "--model", str(gpu.onnx), "--precision", "int8", "--calibration", str(folder),
                     "--cache-dir", str(gpu.cache), "--out", str(out)])
    assert code == 0 and out.is_file() and sidecar_path(out).is_file()
    assert "built int8 96x64" in capsys.readouterr().out
    assert list(gpu.cache.glob("int8-qdq-*.onnx"))  # the calibrated Q/DQ graph the engine was built from
    int8 = TensorRTBackend(gpu.onnx, "cuda", precision="int8", input_size=INPUT_SIZE, cache_dir=gpu.cache)
    ours = int8.infer(*gpu.inputs)
    assert all(np.isfinite(value).all() for value in ours.values())
    assert np.corrcoef(ours["flow"].ravel(), gpu.reference["flow"].ravel())[0, 1] > 0.9
    shutil.rmtree(folder)
