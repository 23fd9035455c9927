"""Static check that an ONNX graph uses only what TensorRT 10's ONNX parser supports.

Sources (read, not guessed):
- Operator list: onnx/onnx-tensorrt ``docs/operators.md``, "Supported ONNX Operators" for
  TensorRT 10.15 (every row marked Y). That page states opset 9..24 for 10.15; TensorRT 10.0's
  page states 9..20, so we accept default-domain opsets 9..20 to stay loadable by every 10.x
  (JetPack 6 ships 10.3). Operators newer than opset 20 cannot occur in such a model.
- Restrictions: the same table (Resize modes, coordinate transformations, nearest modes,
  aspect-ratio policy, no antialiasing; GridSample input 4D; pooling 2D/3D with unit
  dilations and no MaxPool ``Indices``; TopK ``sorted``; ScatterND ``reduction``), and the
  parser's importers in ``onnxOpImporters.cpp`` (Pad modes constant / reflect / edge / wrap).
  GridSample modes map onto IGridSampleLayer: InterpolationMode kLINEAR / kNEAREST / kCUBIC
  and SampleMode kFILL (zeros) / kCLAMP (border) / kREFLECT (reflection).
- Explicit quantization (the only INT8 path of strongly typed networks, TensorRT 10.x and 11.x):
  QuantizeLinear / DequantizeLinear with zero point 0 in INT8 ("Working with Quantized Types",
  TensorRT developer guide); a uint8 or int32 (bias) Q/DQ is rejected by the parser.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import onnx
import onnx.numpy_helper

from jointperception.export.onnx import load_onnx_proto

OPSET_RANGE = (9, 20)  # default-domain opsets every TensorRT 10.x parser accepts
SUPPORTED_OPS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh Attention AveragePool BatchNormalization
BlackmanWindow Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos
Cosh CumSum DeformConv DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand
EyeLike Flatten Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool
GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization GRU HammingWindow HannWindow
HardSigmoid HardSwish Hardmax Identity If ImageScaler InstanceNormalization IsInf IsNaN
LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool
MatMul Max MaxPool Mean MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero
Not OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike
RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp
ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize
ReverseSequence RMSNormalization RNN RoiAlign RotaryEmbedding Round STFT ScaledTanh Scan Scatter
ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus
Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh TensorScatter ThresholdedRelu Tile TopK
Transpose Trilu Unsqueeze Upsample Where Xor
""".split())

# op -> attribute -> (default, allowed values); defaults are the ONNX spec's
ALLOWED_ATTRIBUTES: dict[str, dict[str, tuple[object, frozenset[object]]]] = {
    "Resize": {
        "mode": ("nearest", frozenset({"nearest", "linear"})),
        "coordinate_transformation_mode": (
            "half_pixel",
            frozenset({"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}),
        ),
        "nearest_mode": ("round_prefer_floor", frozenset({"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"})),
        "keep_aspect_ratio_policy": ("stretch", frozenset({"stretch"})),
        "antialias": (0, frozenset({0})),
    },
    "GridSample": {
        "mode": ("bilinear", frozenset({"bilinear", "linear", "nearest", "bicubic", "cubic"})),
        "padding_mode": ("zeros", frozenset({"zeros", "border", "reflection"})),
        "align_corners": (0, frozenset({0, 1})),
    },
    "Pad": {"mode": ("constant", frozenset({"constant", "reflect", "edge", "wrap"}))},
    "TopK": {"sorted": (1, frozenset({1}))},
    "ScatterND": {"reduction": ("none", frozenset({"none"}))},
}
POOLING_OPS = ("AveragePool", "MaxPool", "LpPool")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def _attribute(node: onnx.NodeProto, name: str, default: object) -> object:
    for attribute in node.attribute:
        if attribute.name == name:
            value = onnx.helper.get_attribute_value(attribute)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _node_problems(node: onnx.NodeProto, ranks: dict[str, int]) -> list[str]:
    where = f"node {node.name or '(unnamed)'} ({node.op_type})"
    if node.domain not in ("", "ai.onnx"):
        return [f"{where}: custom domain {node.domain!r} needs a TensorRT plugin"]
    if node.op_type not in SUPPORTED_OPS:
        return [f"{where}: operator not supported by the TensorRT 10 ONNX parser"]
    problems = []
    for name, (default, allowed) in ALLOWED_ATTRIBUTES.get(node.op_type, {}).items():
        value = _attribute(node, name, default)
        if value not in allowed:
            problems.append(f"{where}: {name}={value!r} unsupported (TensorRT accepts {sorted(map(str, allowed))})")
    if node.op_type == "GridSample" and ranks.get(node.input[0], 4) != 4:
        problems.append(f"{where}: input rank {ranks[node.input[0]]}, TensorRT supports 4D GridSample only")
    if node.op_type in POOLING_OPS:
        kernel = _attribute(node, "kernel_shape", [])
        dilations = _attribute(node, "dilations", [])
        if len(kernel) not in (2, 3):
            problems.append(f"{where}: {len(kernel)}D pooling, TensorRT supports 2D or 3D only")
        if any(d != 1 for d in dilations):
            problems.append(f"{where}: dilations {list(dilations)}, TensorRT needs all ones")
    if node.op_type == "MaxPool" and len(node.output) > 1 and node.output[1]:
        problems.append(f"{where}: the Indices output is unsupported")
    return problems


def _subgraphs(node: onnx.NodeProto) -> Iterable[onnx.GraphProto]:
    for attribute in node.attribute:
        yield from ([attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else attribute.graphs)


def _graph_problems(nodes: Iterable[onnx.NodeProto], ranks: dict[str, int]) -> list[str]:
    problems = []
    for node in nodes:
        problems += _node_problems(node, ranks)
        for graph in _subgraphs(node):
            problems += _graph_problems(graph.node, ranks)
    return problems


def _qdq_problems(graph: onnx.GraphProto, types: dict[str, int]) -> list[str]:
    """Q/DQ nodes must be INT8 with zero point 0 (a missing zero point means uint8 0 in ONNX)."""
    constants = {init.name: init for init in graph.initializer}
    problems = []
    for node in graph.node:
        if node.op_type not in QDQ_OPS:
            continue
        where = f"node {node.name or '(unnamed)'} ({node.op_type})"
        quantized = node.output[0] if node.op_type == "QuantizeLinear" else node.input[0]
        zero_point = constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        elem = zero_point.data_type if zero_point is not None else types.get(quantized, onnx.TensorProto.UINT8)
        if elem != onnx.TensorProto.INT8:
            problems.append(f"{where}: {onnx.TensorProto.DataType.Name(elem)} quantization, TensorRT needs INT8")
        elif zero_point is not None and onnx.numpy_helper.to_array(zero_point).any():
            problems.append(f"{where}: non-zero zero point, TensorRT needs symmetric quantization")
    return problems


def check_tensorrt_compatibility(onnx_path: str | Path) -> list[str]:
    """Problems that would stop TensorRT 10 from parsing ``onnx_path``; empty when it can.

    Raises ModelFileError for a missing or corrupt file.
    """
    model = onnx.shape_inference.infer_shapes(load_onnx_proto(onnx_path))
    problems = []
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and not OPSET_RANGE[0] <= opset.version <= OPSET_RANGE[1]:
            problems.append(f"model: opset {opset.version} outside TensorRT 10's {OPSET_RANGE[0]}..{OPSET_RANGE[1]}")
    values = list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output)
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in values if v.type.tensor_type.HasField("shape")}
    problems += _graph_problems(model.graph.node, ranks)
    types = {v.name: v.type.tensor_type.elem_type for v in values}
    types.update({init.name: init.data_type for init in model.graph.initializer})
    problems += _qdq_problems(model.graph, types)
    for function in model.functions:
        problems += _graph_problems(function.node, ranks)
    return problems
