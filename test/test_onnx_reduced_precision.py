"""fp16 and int8 (Q/DQ) ONNX graphs for strongly typed TensorRT builds, made from the bundled
model's real fp32 export: they pass the TensorRT operator check and their CPU ONNX Runtime
parity against fp32 (tolerances in ``eval.precision_parity.TOLERANCES``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from jointperception.data.synthetic import render_sequence
from jointperception.errors import InputError
from jointperception.export.onnx_cache import cached_onnx
from jointperception.export.onnx_fp16 import FP16_OPS, fp16_onnx
from jointperception.export.onnx_int8_tensorrt import tensorrt_int8_onnx
from jointperception.eval.precision_parity import precision_parity
from jointperception.export.tensorrt_ops import check_tensorrt_compatibility
from jointperception.models.weights import DEFAULT_MODEL_PATH
from jointperception.export.onnx_int8 import quantized_onnx
from jointperception.runtime.pipeline import preprocess

pytestmark = pytest.mark.slow  # real bundled-model inference on the CPU, tens of seconds

SIZE = (160, 128)  # (W, H) of the static export


@pytest.fixture(scope="module")
def fp32_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_onnx(DEFAULT_MODEL_PATH, SIZE, cache_dir=tmp_path_factory.mktemp("onnx"))


def calibration_pairs(count: int, seed: int = 11) -> list[tuple[np.ndarray, np.ndarray]]:
    frames = [preprocess(frame, SIZE) for frame in render_sequence(seed, count + 1, SIZE[1], SIZE[0]).frames]
    return list(zip(frames[:-1], frames[1:]))


def _input_types(model: onnx.ModelProto) -> dict[str, set[int]]:
    """op type -> element types of the float tensors its nodes read."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type
             for v in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]}
    types.update({init.name: init.data_type for init in inferred.graph.initializer})
    found: dict[str, set[int]] = {}
    for node in inferred.graph.node:
        elems = {types.get(name) for name in node.input} & {TensorProto.FLOAT, TensorProto.FLOAT16}
        found.setdefault(node.op_type, set()).update(elems)
    return found


def test_fp16_graph_keeps_sensitive_ops_and_io_in_fp32_and_passes_parity(fp32_onnx: Path) -> None:
    path = fp16_onnx(fp32_onnx)
    model = onnx.load_model(str(path))
    assert all(v.type.tensor_type.elem_type == TensorProto.FLOAT for v in [*model.graph.input, *model.graph.output])
    types = _input_types(model)
    assert types["Conv"] == {TensorProto.FLOAT16}  # the bulk of the compute is half precision
    for op in ("Exp", "ReduceSum", "ReduceMax", "Div", "InstanceNormalization", "ReduceL2", "GridSample", "Add"):
        assert op not in FP16_OPS and types[op] == {TensorProto.FLOAT}, op  # softmax, norms, flow sums
    assert check_tensorrt_compatibility(path) == []
    report = precision_parity(fp32_onnx, path, "fp16")
    assert report.failures() == [], report
    assert report.flow_max > 0.0  # it really ran in reduced precision


def test_fp16_graph_is_cached_by_its_source(fp32_onnx: Path) -> None:
    path = fp16_onnx(fp32_onnx)
    stamp = path.stat().st_mtime_ns
    assert fp16_onnx(fp32_onnx) == path and path.stat().st_mtime_ns == stamp
    path.write_bytes(b"truncated")
    assert fp16_onnx(fp32_onnx) == path and check_tensorrt_compatibility(path) == []


def test_int8_qdq_graph_for_tensorrt_passes_the_operator_check_and_parity(fp32_onnx: Path, tmp_path: Path) -> None:
    path = tensorrt_int8_onnx(fp32_onnx, calibration_pairs(6), tmp_path / "int8.onnx")
    model = onnx.load_model(str(path))
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("QuantizeLinear") > 0 and ops.count("DequantizeLinear") > ops.count("QuantizeLinear")
    assert check_tensorrt_compatibility(path) == []
    report = precision_parity(fp32_onnx, path, "int8")
    assert report.failures() == [], report
    assert report.flow_mean > 0.0
    metadata = {p.key: p.value for p in model.metadata_props}
    assert metadata["int8_calibration"].startswith("6 frame pairs")


def test_the_onnxruntime_int8_graph_is_not_tensorrt_qdq(fp32_onnx: Path) -> None:
    """ONNX Runtime's own int8 file (uint8 activations, int32 biases) is refused by the check."""
    problems = check_tensorrt_compatibility(quantized_onnx(fp32_onnx))
    assert problems and all("TensorRT needs INT8" in line or "symmetric" in line for line in problems)


def test_int8_calibration_pairs_must_match_the_engine_shape(fp32_onnx: Path, tmp_path: Path) -> None:
    wrong = [(np.zeros((1, 3, 64, 64), np.float32),) * 2]
    with pytest.raises(InputError, match=r"calibration pair 0: shapes .* the engine takes \(1, 3, 128, 160\)"):
        tensorrt_int8_onnx(fp32_onnx, wrong, tmp_path / "int8.onnx")
    with pytest.raises(InputError, match="at least one frame pair"):
        tensorrt_int8_onnx(fp32_onnx, [], tmp_path / "int8.onnx")
    assert not (tmp_path / "int8.onnx").exists()
