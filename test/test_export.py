"""ONNX export: static and dynamic files, parity with torch through ONNX Runtime on a rendered
pair, metadata, corrupt files, and the static TensorRT operator check."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch
from model_helpers import lively_model
from onnx import TensorProto, helper

from jointperception import cli
from jointperception.config import ModelConfig
from jointperception.errors import InputError, JointPerceptionError, ModelFileError
from jointperception.eval.parity import (
    MIN_MASK_AGREEMENT,
    TOLERANCES,
    ParityError,
    check_parity,
    parity_check,
    parity_pair,
)
from jointperception.export.onnx import read_onnx_model
from jointperception.export.onnx_cache import cached_onnx, source_sha256
from jointperception.export.tensorrt_ops import check_tensorrt_compatibility
from jointperception.models.weights import load_model, save_weights
from jointperception.runtime.backends import TorchBackend
from jointperception.runtime.onnxruntime_backend import OnnxRuntimeBackend
from jointperception.runtime.pipeline import PerceptionPipeline, preprocess

NETWORK_SIZE = (96, 64)  # (W, H), already stride multiples
pytestmark = pytest.mark.slow  # the dynamic-shape export alone takes ~20 s of CPU


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The dynamic file (slow to export: symbolic shapes) comes from the CLI, the static one
    from the ONNX cache in a session-wide folder, which test_backends reuses."""
    folder = tmp_path_factory.mktemp("export")
    weights = save_weights(folder / "tiny.safetensors", lively_model(0), ModelConfig(), {"note": "untrained"})
    dynamic = folder / "dynamic.onnx"
    argv = ["export", "--model", str(weights), "--out", str(dynamic), "--size", "96x64", "--dynamic", "--threads", "1"]
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        code = cli.main(argv)
    static = cached_onnx(weights, NETWORK_SIZE, cache_dir=tmp_path_factory.getbasetemp() / "onnx-cache")
    network = load_model(weights)[0]
    return SimpleNamespace(
        folder=folder, weights=weights, network=network, code=code, printed=printed.getvalue(),
        dynamic=dynamic, static=static,
    )


def test_export_command_writes_dynamic_model_checked_at_two_sizes(exported: SimpleNamespace) -> None:
    assert exported.code == 0 and exported.dynamic.is_file()
    assert not list(exported.folder.glob(".*unchecked*")), "the unchecked temporary file must be gone"
    assert "dynamic H, W" in exported.printed and "dynamo exporter" in exported.printed
    for size in ("96x64", "160x96"):  # --size and a second size exercising the symbolic shapes
        line = rf"parity at {size}: max \|ORT - torch\| mask_prob \S+, flow \S+, occlusion_prob \S+, layer_prob \S+; thresholded"
        assert re.search(line, exported.printed)
    assert read_onnx_model(exported.dynamic).input_size is None
    graph_inputs = onnx.load(str(exported.dynamic)).graph.input
    assert all(not d.HasField("dim_value") for i in graph_inputs for d in i.type.tensor_type.shape.dim[2:])


def test_static_model_fixes_the_network_size(exported: SimpleNamespace) -> None:
    assert read_onnx_model(exported.static).input_size == NETWORK_SIZE
    backend = OnnxRuntimeBackend(exported.static, threads=1)
    assert PerceptionPipeline(backend, network_size=(90, 50)).backend is backend  # pads to 96x64
    with pytest.raises(InputError, match="built for input"):
        PerceptionPipeline(backend, network_size=(128, 96))


@pytest.mark.parametrize(
    "which, size", [("static", NETWORK_SIZE), ("dynamic", NETWORK_SIZE), ("dynamic", (128, 96)), ("dynamic", (70, 20))]
)
def test_onnxruntime_matches_torch_on_a_rendered_pair(
    exported: SimpleNamespace, which: str, size: tuple[int, int]
) -> None:
    report = parity_check(getattr(exported, which), exported.network, size, threads=1)
    assert report.failures() == []
    for name, tolerance in TOLERANCES.items():
        assert report.max_abs_diff[name] <= tolerance, name
    assert min(report.agreement.values()) >= MIN_MASK_AGREEMENT
    # the comparison is not trivial: the flow is pixels and the probabilities vary over the image
    first, second = parity_pair(size)
    out = TorchBackend(exported.network).infer(preprocess(first, size), preprocess(second, size))
    assert np.abs(out["flow"]).max() > 0.5
    assert np.ptp(out["mask_prob"]) > 1e-3 and np.ptp(out["occlusion_prob"]) > 1e-3


def test_exported_correlation_is_one_gather_not_a_slice_per_displacement(exported: SimpleNamespace) -> None:
    """models.flow_branch.local_correlation lowers to Gather + Mul + ReduceSum while exporting
    (7 x 7 displacements would otherwise be 49 Slice, Mul and ReduceSum nodes each)."""
    for path in (exported.static, exported.dynamic):
        ops = [node.op_type for node in onnx.load(str(path)).graph.node]
        assert ops.count("Gather") >= 1 and ops.count("Slice") < 10 and ops.count("ReduceSum") < 10, path.name


def test_parity_check_fails_for_a_different_network(exported: SimpleNamespace) -> None:
    report = parity_check(exported.static, lively_model(1), NETWORK_SIZE, threads=1)
    assert any(line.startswith("flow") for line in report.failures())
    with pytest.raises(ParityError, match="flow differs") as info:
        check_parity(report)
    assert isinstance(info.value, JointPerceptionError)  # the CLI turns it into exit code 2


def test_metadata_records_config_size_opset_and_versions(exported: SimpleNamespace) -> None:
    digest = source_sha256(exported.weights)
    for path, size in ((exported.static, "96x64"), (exported.dynamic, "dynamic")):
        metadata = read_onnx_model(path).metadata
        assert json.loads(metadata["model_config"]) == dataclasses.asdict(ModelConfig())
        assert metadata["input_size"] == size and metadata["source_sha256"] == digest
        assert metadata["opset"] == "18" and metadata["exporter"] == "dynamo"
        assert metadata["torch_version"] == torch.__version__
        assert {o.domain: o.version for o in onnx.load(str(path)).opset_import}[""] == 18
    assert read_onnx_model(exported.dynamic).metadata["network_size"] == "96x64"


def test_corrupt_or_foreign_onnx_files_give_clear_errors(exported: SimpleNamespace, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(exported.static.read_bytes()[:5000])
    for bad in (truncated, tmp_path / "missing.onnx"):
        with pytest.raises(ModelFileError, match=re.escape(str(bad))):
            OnnxRuntimeBackend(bad)
    foreign = tmp_path / "foreign.onnx"
    onnx.save(_model([helper.make_node("Relu", ["x"], ["y"])], opset=18), str(foreign))
    with pytest.raises(ModelFileError, match="expected"):
        read_onnx_model(foreign)
    copy = tmp_path / "copy.onnx"
    shutil.copy(exported.static, copy)
    assert OnnxRuntimeBackend(copy).input_size == NETWORK_SIZE  # an intact copy loads


def _model(nodes: list[onnx.NodeProto], opset: int, out_shape: tuple[int, ...] = (1, 1, 4, 4)) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 1, 4, 4))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_tensorrt_check_passes_our_exports_and_flags_a_bad_graph(exported: SimpleNamespace, tmp_path: Path) -> None:
    assert check_tensorrt_compatibility(exported.static) == []
    assert check_tensorrt_compatibility(exported.dynamic) == []
    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 2, 2])
    nodes = [
        helper.make_node("Constant", [], ["scales"], value=scales),
        helper.make_node("Resize", ["x", "", "scales"], ["r"], name="up", mode="cubic", antialias=1),
        helper.make_node("Det", ["r"], ["d"], name="det"),
        helper.make_node("Pad", ["x", "pads"], ["p"], name="pad", mode="reflect"),
        helper.make_node("Unsqueeze", ["d", "axes"], ["y"], name="unsq"),
    ]
    model = _model(nodes, opset=18, out_shape=(1, 1, 1))
    model.graph.initializer.extend([
        helper.make_tensor("pads", TensorProto.INT64, [8], [0, 0, 1, 1, 0, 0, 1, 1]),
        helper.make_tensor("axes", TensorProto.INT64, [1], [0]),
    ])
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    problems = check_tensorrt_compatibility(bad)
    assert any("det (Det)" in p and "not supported" in p for p in problems)
    assert any("up (Resize)" in p and "mode='cubic'" in p for p in problems)
    assert any("up (Resize)" in p and "antialias=1" in p for p in problems)
    assert not any("pad" in p or "unsq" in p for p in problems), problems  # supported ops pass
    new_opset = tmp_path / "opset21.onnx"
    onnx.save(_model([helper.make_node("Relu", ["x"], ["y"])], opset=21), str(new_opset))
    assert check_tensorrt_compatibility(new_opset) == ["model: opset 21 outside TensorRT 10's 9..20"]
