"""Keep one- and two-channel tensors out of ONNX Runtime's blocked (NCHWc) CPU layout.

At optimisation level ALL, ONNX Runtime's CPU provider rewrites convolutions into the NCHWc
layout (channels in blocks of 8 or 16) and carries that layout on through the Resize and
Sigmoid nodes that follow. Our graph ends in score / flow convolutions with 1 or 2 output
channels whose Resize (to stride 8, then to full resolution) and Sigmoid then run on 16x the
data. An identity ``Reshape(x, [0, 0, 0, 0])`` (0 = keep that dimension) in front of such a
Resize is an op the NCHWc pass does not convert, so the tensor is reordered back to NCHW at
low resolution and the upsampling runs on its real channels. The maths is unchanged.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

NCHWC_MIN_CHANNELS = 8  # smallest NCHWc block (AVX2); fewer channels are always padded


def _channel_counts(proto: onnx.ModelProto) -> dict[str, int]:
    """Tensor name -> static channel count (dim 1) of every 4-D tensor shape inference resolves."""
    inferred = shape_inference.infer_shapes(proto).graph
    counts = {}
    for value in (*inferred.value_info, *inferred.input, *inferred.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[1].HasField("dim_value"):
            counts[value.name] = int(dims[1].dim_value)
    return counts


def unblock_thin_resizes(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """-> (copy of ``proto`` with an identity Reshape before every Resize whose input has fewer
    than NCHWC_MIN_CHANNELS channels, number of Reshapes inserted)."""
    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    channels = _channel_counts(proto)
    graph = proto.graph
    keep_dims = "nchw_identity_shape"
    nodes = []
    inserted = 0
    for node in graph.node:
        source = node.input[0] if node.op_type == "Resize" else ""
        if source and channels.get(source, NCHWC_MIN_CHANNELS) < NCHWC_MIN_CHANNELS:
            plain = f"{source}_nchw_{inserted}"
            nodes.append(helper.make_node("Reshape", [source, keep_dims], [plain], name=f"unblock_{plain}"))
            node.input[0] = plain
            inserted += 1
        nodes.append(node)
    if inserted:
        graph.initializer.append(numpy_helper.from_array(np.zeros(4, dtype=np.int64), keep_dims))
        del graph.node[:]
        graph.node.extend(nodes)
    return proto, inserted
