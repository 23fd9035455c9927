"""Mixed-precision (fp16) ONNX for strongly typed TensorRT builds, derived from the fp32 export.

TensorRT 11 takes precision from the graph's own types (strong typing), so an fp16 engine needs
an fp16 graph. Only the compute-heavy, range-safe ops run in float16 (``FP16_OPS``: the
convolutions, activations, pooling, concatenation and the feature products); everything that
ModelOpt AutoCast would keep in float32 stays float32: the softmax pieces (Exp, ReduceMax,
ReduceSum, Div), the normalisations (Instance/Batch/Layer norm, ReduceL2), the flow
accumulation and coordinate arithmetic (Add, Sub, Div, Resize of the flow, GridSample) and the
cost-volume normalisation (Div). Inputs and outputs stay float32 (Cast nodes at the borders).
The file is cached beside its fp32 source, keyed by that file's sha256.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from jointperception.export.onnx import load_onnx_proto, read_onnx_model
from jointperception.export.onnx_cache import file_sha256, is_current
from jointperception.export.onnx_hash import stamp_graph_hash

LOG = logging.getLogger(__name__)

FP16_OPS = frozenset({"Conv", "ConvTranspose", "Relu", "LeakyRelu", "Sigmoid", "Clip", "Concat",
                      "AveragePool", "MaxPool", "Pad", "Mul"})
FP16_SUFFIX = "__fp16"


class _Retyper:
    """Rewrites a topologically sorted node list: FP16_OPS nodes read and write float16 copies of
    their float tensors; a Cast is added only where a tensor crosses between the two types."""

    def __init__(self, graph: onnx.GraphProto, float_names: set[str]) -> None:
        self.float_names = float_names  # tensors of type float32 in the source graph
        self.initializers = {init.name: init for init in graph.initializer}
        self.have: dict[str, set[int]] = {}  # tensor -> element types available (FLOAT, FLOAT16)
        self.nodes: list[onnx.NodeProto] = []
        self.new_initializers: list[onnx.TensorProto] = []

    def _name(self, tensor: str, elem: int) -> str:
        return tensor + FP16_SUFFIX if elem == TensorProto.FLOAT16 else tensor

    def need(self, tensor: str, elem: int) -> str:
        """The name of ``tensor`` as ``elem`` (FLOAT or FLOAT16), adding a Cast or an fp16
        initializer copy the first time it is asked for."""
        if tensor not in self.float_names or not tensor:
            return tensor
        available = self.have.setdefault(tensor, {TensorProto.FLOAT})
        name = self._name(tensor, elem)
        if elem in available:
            return name
        if elem == TensorProto.FLOAT16 and tensor in self.initializers:
            values = numpy_helper.to_array(self.initializers[tensor]).astype(np.float16)
            self.new_initializers.append(numpy_helper.from_array(values, name))
        else:
            other = TensorProto.FLOAT if elem == TensorProto.FLOAT16 else TensorProto.FLOAT16
            self.nodes.append(helper.make_node("Cast", [self._name(tensor, other)], [name], to=elem, name=f"cast_{name}"))
        available.add(elem)
        return name

    def add(self, node: onnx.NodeProto) -> None:
        elem = TensorProto.FLOAT16 if node.op_type in FP16_OPS else TensorProto.FLOAT
        inputs = [self.need(name, elem) for name in node.input]
        outputs = [self._name(name, elem) if name in self.float_names else name for name in node.output]
        for name in node.output:
            if name in self.float_names:
                self.have[name] = {elem}
        rewritten = onnx.NodeProto()
        rewritten.CopyFrom(node)
        del rewritten.input[:], rewritten.output[:]
        rewritten.input.extend(inputs)
        rewritten.output.extend(outputs)
        self.nodes.append(rewritten)


def convert_to_fp16(proto: onnx.ModelProto) -> onnx.ModelProto:
    """An fp32 ModelProto -> a new mixed-precision one: FP16_OPS in float16, the rest float32,
    graph inputs and outputs float32. Nodes with subgraphs are left float32."""
    inferred = onnx.shape_inference.infer_shapes(proto)
    graph = inferred.graph
    values = list(graph.input) + list(graph.value_info) + list(graph.output)
    float_names = {v.name for v in values if v.type.tensor_type.elem_type == TensorProto.FLOAT}
    float_names |= {i.name for i in graph.initializer if i.data_type == TensorProto.FLOAT}
    retyper = _Retyper(graph, float_names)
    for node in graph.node:
        retyper.add(node)
    for output in graph.output:  # outputs keep their names and float32
        retyper.need(output.name, TensorProto.FLOAT)
    used = {name for node in retyper.nodes for name in node.input}
    initializers = [i for i in graph.initializer if i.name in used] + retyper.new_initializers
    new_graph = helper.make_graph(retyper.nodes, graph.name, list(proto.graph.input), list(proto.graph.output),
                                  initializer=initializers)
    model = helper.make_model(new_graph, opset_imports=list(proto.opset_import), ir_version=proto.ir_version,
                              producer_name=proto.producer_name)
    onnx.helper.set_model_props(model, {p.key: p.value for p in proto.metadata_props})
    onnx.checker.check_model(model)
    return model


def fp16_onnx(fp32_path: Path) -> Path:
    """fp32 ONNX export -> path of its mixed-precision version (``<stem>-fp16.onnx`` beside it),
    built on first use and rebuilt when stale or corrupt. Raises ModelFileError for a bad source."""
    info = read_onnx_model(fp32_path)
    digest = file_sha256(fp32_path)
    target = fp32_path.with_name(f"{fp32_path.stem}-fp16.onnx")
    if is_current(target, "fp16_source_sha256", digest):
        return target
    model = convert_to_fp16(load_onnx_proto(fp32_path))
    onnx.helper.set_model_props(model, info.metadata | {"fp16_source_sha256": digest,
                                                        "fp16_ops": ",".join(sorted(FP16_OPS))})
    stamp_graph_hash(model)
    with tempfile.TemporaryDirectory(dir=fp32_path.parent) as work:
        staged = Path(work) / "fp16.onnx"
        onnx.save_model(model, str(staged))
        os.replace(staged, target)
    LOG.info("converted %s to mixed fp16 (%s in float16) in %s", fp32_path.name, ", ".join(sorted(FP16_OPS)), target)
    return target
