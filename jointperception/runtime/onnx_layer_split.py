"""The fused ONNX graph split at its flow: the joint network, and the motion-layer head alone.

The fused graph (``models.perception``) ends in the motion-layer head over its own flow. With the
flow refinement on, the runtime runs that head again on the refined flow instead
(``runtime.pipeline``), so ONNX Runtime holds the graph as two exact subgraphs (``onnx.utils.
Extractor``, the same nodes and weights; in a dynamic-shape export the head takes its output
size from the flow instead of image1, the same H and W): image pair -> (mask_prob, flow, occlusion_prob), and
flow -> layer_prob. The two run one after the other give the fused graph's outputs unchanged, at
its cost (25.05 ms fused vs 22.63 + 2.19 ms split, fp32 at 320x256, 2 threads, one throwaway run).
"""
from __future__ import annotations

import onnx
import onnx.utils

from jointperception.models.perception import (
    INPUT_NAMES,
    JOINT_OUTPUT_NAMES,
    LAYER_INPUT_NAME,
    LAYER_OUTPUT_NAME,
)


def split_layer_head(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """Fused graph -> (joint graph: INPUT_NAMES -> JOINT_OUTPUT_NAMES, layer head: LAYER_INPUT_NAME
    -> LAYER_OUTPUT_NAME). Raises ValueError when the graph lacks one of those tensors."""
    graph = proto.graph
    tensors = {name for node in graph.node for name in node.output} | {value.name for value in graph.input}
    missing = [name for name in (*INPUT_NAMES, *JOINT_OUTPUT_NAMES, LAYER_OUTPUT_NAME) if name not in tensors]
    if missing:
        raise ValueError(f"the graph has no tensor {', '.join(missing)}; export it with `jointperception export`")
    extractor = onnx.utils.Extractor(proto)
    joint = extractor.extract_model(list(INPUT_NAMES), list(JOINT_OUTPUT_NAMES))
    head = extractor.extract_model([LAYER_INPUT_NAME], [LAYER_OUTPUT_NAME])
    _read_spatial_size_from_flow(head)
    for part in (joint, head):
        onnx.helper.set_model_props(part, {entry.key: entry.value for entry in proto.metadata_props})
    return joint, head


def _read_spatial_size_from_flow(head: onnx.ModelProto) -> None:
    """A dynamic-shape export takes the head's output size from Shape(image1) (H and W only, via
    its ``start`` attribute); the flow has the same H and W, so those nodes read the flow instead.
    Raises ValueError for any other use of an image in the head."""
    for node in head.graph.node:
        for index, name in enumerate(node.input):
            if name not in INPUT_NAMES:
                continue
            start = next((attribute.i for attribute in node.attribute if attribute.name == "start"), 0)
            if node.op_type != "Shape" or start % 4 < 2:  # start < 0 counts from the 4th dimension
                raise ValueError(f"the motion-layer head reads {name} in node {node.name} ({node.op_type})")
            node.input[index] = LAYER_INPUT_NAME
