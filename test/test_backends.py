"""Runtime backends: ONNX Runtime through the pipeline against torch, the ONNX export cache,
``auto`` selection with its log, and clear errors for unavailable explicit requests."""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from model_helpers import lively_model

from jointperception.config import ModelConfig
from jointperception.data.synthetic import render_sequence
from jointperception.errors import InputError
from jointperception.export import onnx_cache
from jointperception.export.onnx import ExportResult, load_onnx_proto, read_onnx_model
from jointperception.models.weights import load_model, save_weights
from jointperception.runtime import onnxruntime_backend
from jointperception.runtime.backends import TorchBackend, create_backend
from jointperception.runtime.onnx_cpu_layout import unblock_thin_resizes
from jointperception.runtime.onnxruntime_backend import OnnxRuntimeBackend
from jointperception.runtime.pipeline import PerceptionPipeline

CAMERA = (120, 80)  # (W, H) of the rendered frames; the network runs smaller
INPUT_SIZE = (96, 64)  # (W, H) of the static ONNX export


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """One static ONNX export through the session-wide cache (test_export makes the same one;
    dynamic shapes are covered there, their export is slow)."""
    folder = tmp_path_factory.mktemp("backends")
    weights = save_weights(folder / "tiny.safetensors", lively_model(0), ModelConfig(), {"note": "untrained"})
    cache = tmp_path_factory.getbasetemp() / "onnx-cache"
    ort = create_backend("onnxruntime", weights, "cpu", threads=1, input_size=INPUT_SIZE, cache_dir=cache)
    frames = render_sequence(3, 2, CAMERA[1], CAMERA[0]).frames
    reference = TorchBackend(load_model(weights)[0])
    return SimpleNamespace(weights=weights, cache=cache, ort=ort, torch=reference, frames=frames)


@pytest.mark.parametrize("network_size", [(96, 64), (80, 40)])  # both pad to the 96x64 input
def test_onnxruntime_pipeline_matches_torch(setup: SimpleNamespace, network_size: tuple[int, int]) -> None:
    assert isinstance(setup.ort, OnnxRuntimeBackend) and setup.ort.input_size == INPUT_SIZE
    first, second = setup.frames
    ours = PerceptionPipeline(setup.ort, network_size).infer_pair(first, second)
    reference = PerceptionPipeline(setup.torch, network_size).infer_pair(first, second)
    assert ours.flow.shape == (CAMERA[1], CAMERA[0], 2) and ours.mask.shape == (CAMERA[1], CAMERA[0])
    assert np.abs(reference.flow).max() > 0.5  # real displacements, not ~0
    # flow is rescaled to camera pixels, so the 1e-3 px network tolerance scales with it
    scale = max(CAMERA[0] / network_size[0], CAMERA[1] / network_size[1])
    assert np.abs(ours.flow - reference.flow).max() <= 1e-3 * scale
    assert np.abs(ours.mask_probability - reference.mask_probability).max() <= 1e-4
    for name in ("mask", "occlusion", "layers"):
        assert np.mean(getattr(ours, name) == getattr(reference, name)) >= 0.999, name


def test_motion_layer_head_runs_alone_as_in_the_fused_graph(setup: SimpleNamespace) -> None:
    """The split graph (runtime.onnx_layer_split): the head on the graph's own flow gives the fused
    layers bit for bit, without ``layers`` the rest is unchanged, and ORT's head matches torch's."""
    rng = np.random.default_rng(5)
    a, b = (rng.standard_normal((1, 3, INPUT_SIZE[1], INPUT_SIZE[0])).astype(np.float32) for _ in range(2))
    fused = setup.ort.infer(a, b)
    joint = setup.ort.infer(a, b, layers=False)
    assert set(joint) == {"mask_prob", "flow", "occlusion_prob"}
    for name, value in joint.items():
        np.testing.assert_array_equal(value, fused[name], err_msg=name)
    np.testing.assert_array_equal(setup.ort.motion_layers(fused["flow"]), fused["layer_prob"])
    other_flow = (fused["flow"] + rng.normal(0.0, 2.0, fused["flow"].shape)).astype(np.float32)
    ours, reference = setup.ort.motion_layers(other_flow), setup.torch.motion_layers(other_flow)
    assert ours.shape == fused["layer_prob"].shape and np.abs(ours - fused["layer_prob"]).max() > 1e-3
    np.testing.assert_allclose(ours, reference, atol=1e-4)
    torch_joint = setup.torch.infer(a, b, layers=False)
    assert set(torch_joint) == set(joint)
    np.testing.assert_allclose(torch_joint["flow"], setup.torch.infer(a, b)["flow"], atol=1e-6)


def test_onnxruntime_outputs_are_fresh_arrays(setup: SimpleNamespace) -> None:
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((1, 3, INPUT_SIZE[1], INPUT_SIZE[0])).astype(np.float32) for _ in range(2))
    first = setup.ort.infer(a, b)
    kept = {name: value.copy() for name, value in first.items()}
    second = setup.ort.infer(b, a)
    assert not np.array_equal(second["flow"], kept["flow"])  # the inputs differ, so must the outputs
    for name, value in first.items():
        np.testing.assert_array_equal(value, kept[name])  # an earlier result is never overwritten


def test_cache_is_reused_and_a_corrupt_entry_rebuilt(
    setup: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cached = setup.ort.onnx_path
    assert cached.parent == setup.cache and onnx_cache.source_sha256(setup.weights)[:16] in cached.name
    exports: list[Path] = []
    good = cached.read_bytes()

    def fake_export(*args: object, **kwargs: object) -> ExportResult:  # stands in for the slow real export
        target = Path(args[2])
        exports.append(target)
        target.write_bytes(good)
        return ExportResult(path=target, exporter="copy", seconds=0.0)

    monkeypatch.setattr(onnx_cache, "export_onnx", fake_export)
    with caplog.at_level(logging.INFO):
        assert onnx_cache.cached_onnx(setup.weights, INPUT_SIZE, cache_dir=setup.cache) == cached
    assert exports == [] and "using cached ONNX" in caplog.text
    cached.write_bytes(good[: len(good) // 3])  # truncated, as by a full disk
    with caplog.at_level(logging.WARNING):
        backend = create_backend("onnxruntime", setup.weights, threads=1, input_size=INPUT_SIZE, cache_dir=setup.cache)
    assert exports == [cached] and "unusable, rebuilding" in caplog.text
    assert read_onnx_model(backend.onnx_path).metadata["source_sha256"] == onnx_cache.source_sha256(setup.weights)


def test_cache_key_changes_with_the_graph_code(
    setup: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = tmp_path / "models"
    code.mkdir()
    (code / "perception.py").write_text("graph = 1\n")
    monkeypatch.setattr(onnx_cache, "GRAPH_CODE_DIR", code)
    before = onnx_cache.source_sha256(setup.weights)
    (code / "perception.py").write_text("graph = 2\n")  # an upgrade that changes the graph
    assert onnx_cache.source_sha256(setup.weights) != before


def test_auto_prefers_onnxruntime_on_cpu_and_logs_why(setup: SimpleNamespace, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="jointperception.runtime.backends"):
        backend = create_backend("auto", setup.weights, "cpu", threads=1, input_size=INPUT_SIZE, cache_dir=setup.cache)
    assert isinstance(backend, OnnxRuntimeBackend)
    [line] = [r.getMessage() for r in caplog.records if r.name == "jointperception.runtime.backends"]
    assert line.startswith("backend auto: onnxruntime-cpu (order tensorrt > onnxruntime-cuda > torch-cuda > ")
    assert "skipped tensorrt: " in line and "onnxruntime-cuda: device is cpu; torch-cuda: device is cpu)" in line


def test_auto_falls_back_to_torch_when_onnxruntime_is_missing(
    setup: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(onnxruntime_backend, "unavailable_reason", lambda device: "onnxruntime is not installed")
    with caplog.at_level(logging.INFO, logger="jointperception.runtime.backends"):
        backend = create_backend("auto", setup.weights, "cpu", cache_dir=setup.cache)
    assert isinstance(backend, TorchBackend)
    assert "backend auto: torch-cpu (" in caplog.text
    assert "onnxruntime-cpu: onnxruntime is not installed)" in caplog.text


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present, so auto would not fall back")
def test_auto_on_cuda_without_gpu_warns_and_falls_back(
    setup: SimpleNamespace, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="jointperception.runtime.backends"):
        backend = create_backend("auto", setup.weights, "cuda", threads=1, input_size=INPUT_SIZE, cache_dir=setup.cache)
    assert backend.device == "cpu"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("backend auto: onnxruntime-cpu, falling back from cuda")
    assert "torch-cuda: PyTorch sees no CUDA GPU" in warnings[0] and "CUDAExecutionProvider" in warnings[0]


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_explicit_tensorrt_request_errors_clearly(setup: SimpleNamespace) -> None:
    with pytest.raises(InputError, match="tensorrt is not installed"):
        create_backend("tensorrt", setup.weights, "cuda")


def test_explicit_unavailable_requests_error_clearly(setup: SimpleNamespace) -> None:
    if onnxruntime_backend.unavailable_reason("cuda") is None:
        pytest.skip("onnxruntime has a CUDA execution provider here")
    with pytest.raises(InputError, match="CUDAExecutionProvider"):
        create_backend("onnxruntime", setup.weights, "cuda", cache_dir=setup.cache)
    with pytest.raises(InputError, match="unknown backend"):
        create_backend("openvino", setup.weights)
    with pytest.raises(InputError, match="needs a .safetensors"):
        create_backend("torch", setup.ort.onnx_path)


def test_channels_last_matches_the_default_layout(setup: SimpleNamespace) -> None:
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal((1, 3, INPUT_SIZE[1], INPUT_SIZE[0])).astype(np.float32) for _ in range(2))
    nhwc = TorchBackend(load_model(setup.weights)[0], channels_last=True)
    assert nhwc.precision == "fp32" and nhwc.channels_last
    expected, got = setup.torch.infer(a, b), nhwc.infer(a, b)
    assert np.abs(expected["flow"]).max() > 0.5
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, atol=1e-4, rtol=1e-4, err_msg=name)


def test_thin_resizes_leave_the_nchwc_layout_with_the_same_outputs(setup: SimpleNamespace) -> None:
    import onnxruntime

    proto = load_onnx_proto(setup.ort.onnx_path)
    tuned, inserted = unblock_thin_resizes(proto)
    resizes = [n for n in proto.graph.node if n.op_type == "Resize"]
    # mask and occlusion logits (1 channel) and flow (2 channels) are upsampled and qualify; the
    # motion-layer net's upsampling of its 16..64-channel features does not
    assert 3 <= inserted < len(resizes) and len(proto.graph.node) + inserted == len(tuned.graph.node)
    rng = np.random.default_rng(2)
    feeds = {name: rng.standard_normal((1, 3, INPUT_SIZE[1], INPUT_SIZE[0])).astype(np.float32)
             for name in ("image1", "image2")}
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    runs = [onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
            .run(None, feeds) for model in (proto, tuned)]
    for before, after in zip(*runs):
        np.testing.assert_allclose(after, before, atol=1e-4, rtol=1e-5)


def create_backend_int8(setup: SimpleNamespace) -> OnnxRuntimeBackend:
    return OnnxRuntimeBackend(setup.weights, threads=1, input_size=INPUT_SIZE, cache_dir=setup.cache, precision="int8")


def test_int8_is_quantised_once_cached_and_close_to_fp32(setup: SimpleNamespace) -> None:
    int8 = create_backend_int8(setup)
    assert int8.precision == "int8" and int8.onnx_path != setup.ort.onnx_path
    ops = {node.op_type for node in load_onnx_proto(int8.onnx_path).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    built = int8.onnx_path.stat().st_mtime_ns
    assert create_backend_int8(setup).onnx_path.stat().st_mtime_ns == built  # reused, not rebuilt
    first, second = setup.frames
    ours = PerceptionPipeline(int8, INPUT_SIZE).infer_pair(first, second)
    reference = PerceptionPipeline(setup.ort, INPUT_SIZE).infer_pair(first, second)
    flow_scale = float(np.abs(reference.flow).mean())
    assert flow_scale > 0.1 and float(np.abs(ours.flow - reference.flow).mean()) <= 0.1 * flow_scale
    assert np.mean(ours.mask == reference.mask) >= 0.9


def test_int8_precision_is_checked_before_any_work(setup: SimpleNamespace) -> None:
    with pytest.raises(InputError, match="int8 runs on the CPU provider only"):
        OnnxRuntimeBackend(setup.ort.onnx_path, "cuda", precision="int8")
    with pytest.raises(InputError, match="precision 'fp16'"):
        OnnxRuntimeBackend(setup.ort.onnx_path, precision="fp16")


def test_onnxruntime_spinning_can_be_turned_off(setup: SimpleNamespace) -> None:
    sleeping = OnnxRuntimeBackend(setup.ort.onnx_path, threads=2, allow_spinning=False)
    options = sleeping._session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.intra_op_num_threads == 2 and options.inter_op_num_threads == 1
    rng = np.random.default_rng(3)
    a, b = (rng.standard_normal((1, 3, INPUT_SIZE[1], INPUT_SIZE[0])).astype(np.float32) for _ in range(2))
    np.testing.assert_allclose(sleeping.infer(a, b)["flow"], setup.ort.infer(a, b)["flow"], atol=1e-5)


def test_precision_requests_are_checked_per_backend(setup: SimpleNamespace, caplog: pytest.LogCaptureFixture) -> None:
    for name, precision, message in [("torch", "int8", "backend torch runs fp32, fp16, not int8"),
                                     ("onnxruntime", "fp16", "backend onnxruntime runs fp32, int8, not fp16"),
                                     ("torch", "fp16", "fp16 needs a CUDA device"),
                                     ("auto", "fp64", "unknown precision 'fp64'")]:
        with pytest.raises(InputError, match=message):
            create_backend(name, setup.weights, "cpu", precision=precision)
    with pytest.raises(InputError, match="torch-cpu: fp16 not on cpu"):
        create_backend("auto", setup.weights, "cpu", input_size=INPUT_SIZE, cache_dir=setup.cache, precision="fp16")
    with caplog.at_level(logging.INFO, logger="jointperception.runtime.backends"):
        int8 = create_backend("auto", setup.weights, "cpu", threads=1, input_size=INPUT_SIZE, cache_dir=setup.cache,
                              precision="int8")
    assert isinstance(int8, OnnxRuntimeBackend) and int8.precision == "int8"
    assert "backend auto: onnxruntime-cpu" in caplog.text
