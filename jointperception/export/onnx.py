"""ONNX export of the fused PerceptionModel and reading exported files back.

One self-contained ``.onnx`` file (weights inside, ``external_data=False``), inputs ``image1``,
``image2`` normalised float32 (1, 3, H, W); outputs ``mask_prob``, ``flow``, ``occlusion_prob``,
``layer_prob`` (models.perception).
Static export fixes (H, W); dynamic export leaves H = 32 h, W = 32 w symbolic. The ONNX
``metadata_props`` record the model config, input size, opset, exporter, torch version and the
graph's content hash (``export.onnx_hash``).
"""
from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from google.protobuf.message import DecodeError

from jointperception.config import ModelConfig
from jointperception.errors import ModelFileError
from jointperception.export.onnx_hash import check_graph_hash, stamp_graph_hash
from jointperception.models.jointnet import JointNet
from jointperception.models.motionnet import MotionLayerNet
from jointperception.models.normalize import NETWORK_STRIDE
from jointperception.models.perception import (
    INPUT_NAMES,
    OUTPUT_NAMES,
    PerceptionModel,
    motion_stride_for,
)
from jointperception.models.weights import load_motion_model

LOG = logging.getLogger(__name__)

DEFAULT_OPSET = 18  # the dynamo exporter's native opset
MIN_OPSET = 17
MAX_DYNAMIC_SIDE = 4096  # px: upper bound of a dynamic input side, for torch.export
CHATTY_LOGGERS = ("onnxscript", "onnx_ir", "torch.onnx")  # log every graph rewrite at INFO


@dataclass(frozen=True)
class ExportResult:
    path: Path
    exporter: str  # "dynamo" or "torchscript" (fallback)
    seconds: float  # wall time of export + metadata + save


@dataclass(frozen=True)
class OnnxModelInfo:
    path: Path
    input_size: tuple[int, int] | None  # (W, H) of a static model; None when H, W are dynamic
    metadata: dict[str, str]


def onnx_opset(proto: onnx.ModelProto) -> int:
    """The default-domain ("" / "ai.onnx") opset a model imports."""
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


@contextmanager
def _quiet_exporter_logs() -> Iterator[None]:
    """Raise the exporter's loggers to WARNING for the duration of an export, then restore them."""
    loggers = [logging.getLogger(name) for name in CHATTY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logging.WARNING, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _export_proto(
    module: torch.nn.Module, example: tuple[torch.Tensor, torch.Tensor], dynamic: bool, opset: int
) -> tuple[onnx.ModelProto, str]:
    """-> (ModelProto, exporter name). torch.export (dynamo) first; the TorchScript exporter only
    when dynamo fails or cannot produce the requested opset (it emits 18 natively)."""
    names = {
        "input_names": list(INPUT_NAMES), "output_names": list(OUTPUT_NAMES), "opset_version": opset, "verbose": False
    }
    dynamic_shapes = None
    if dynamic:
        side = MAX_DYNAMIC_SIDE // NETWORK_STRIDE
        h, w = torch.export.Dim("h32", min=1, max=side), torch.export.Dim("w32", min=1, max=side)
        dims = {2: NETWORK_STRIDE * h, 3: NETWORK_STRIDE * w}
        dynamic_shapes = {"image1": dims, "image2": dims}
    try:
        program = torch.onnx.export(
            module, example, dynamo=True, external_data=False, dynamic_shapes=dynamic_shapes, **names
        )
    except torch.onnx.OnnxExporterError as exc:
        LOG.warning("dynamo ONNX export failed (%s: %s); using the TorchScript exporter", type(exc).__name__, exc)
    else:
        produced = onnx_opset(program.model_proto)
        if produced == opset:
            return program.model_proto, "dynamo"
        LOG.warning("the dynamo exporter produced opset %d, not %d; using the TorchScript exporter", produced, opset)
    buffer = io.BytesIO()
    axes = {name: {2: "height", 3: "width"} for name in INPUT_NAMES + OUTPUT_NAMES} if dynamic else None
    torch.onnx.export(module, example, buffer, dynamo=False, dynamic_axes=axes, **names)
    return onnx.load_from_string(buffer.getvalue()), "torchscript"


def export_onnx(
    network: JointNet,
    model_cfg: ModelConfig,
    path: str | Path,
    input_size: tuple[int, int],
    dynamic: bool = False,
    opset: int = DEFAULT_OPSET,
    extra_metadata: dict[str, str] | None = None,
    motion_net: MotionLayerNet | None = None,
) -> ExportResult:
    """Export PerceptionModel(network, motion_net) to ``path`` atomically (tmp + rename), both
    moved to the CPU in float32 eval mode; motion_net None = the bundled MotionLayerNet.

    input_size: (W, H), multiples of NETWORK_STRIDE; the traced example size (static: the only
    size; dynamic: it also fixes the motion net's pooling, ``motion_stride_for`` its width, which
    the metadata records). Raises ValueError for a size that is not a stride multiple or an
    opset < MIN_OPSET.
    """
    width, height = input_size
    if width <= 0 or height <= 0 or width % NETWORK_STRIDE or height % NETWORK_STRIDE:
        raise ValueError(f"input size {input_size} must be positive multiples of {NETWORK_STRIDE}")
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} < {MIN_OPSET}")
    start = time.perf_counter()
    if motion_net is None:
        motion_net = load_motion_model()[0]
    motion_stride = motion_stride_for(width)  # a dynamic graph keeps the traced example's
    module = PerceptionModel(network, motion_net, motion_stride).to(device="cpu", dtype=torch.float32).eval()
    example = (torch.zeros(1, 3, height, width), torch.zeros(1, 3, height, width))
    with torch.no_grad(), _quiet_exporter_logs():
        proto, exporter = _export_proto(module, example, dynamic, opset)
    metadata = {
        "model_config": json.dumps(dataclasses.asdict(model_cfg)),
        "input_size": "dynamic" if dynamic else f"{width}x{height}",
        "network_stride": str(NETWORK_STRIDE),
        "opset": str(opset),
        "exporter": exporter,
        "torch_version": torch.__version__,
        "outputs": ",".join(OUTPUT_NAMES),
        "motion_stride": str(motion_stride),
        **(extra_metadata or {}),
    }
    onnx.helper.set_model_props(proto, metadata)
    stamp_graph_hash(proto)
    onnx.checker.check_model(proto)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    onnx.save_model(proto, str(tmp))
    os.replace(tmp, path)
    return ExportResult(path=path, exporter=exporter, seconds=time.perf_counter() - start)


def _static_size(graph_input: onnx.ValueInfoProto) -> tuple[int, int] | None:
    dims = graph_input.type.tensor_type.shape.dim
    if len(dims) != 4 or not dims[2].HasField("dim_value") or not dims[3].HasField("dim_value"):
        return None
    return int(dims[3].dim_value), int(dims[2].dim_value)


def load_onnx_proto(path: str | Path) -> onnx.ModelProto:
    """Load and validate any single-file ONNX model; ModelFileError (naming the file) when
    it is missing, truncated or corrupt, or its graph differs from the hash recorded at export."""
    path = Path(path)
    try:
        proto = onnx.load_model(str(path), load_external_data=False)
        onnx.checker.check_model(proto)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: ONNX file not found") from None
    except (OSError, DecodeError, onnx.checker.ValidationError) as exc:
        raise ModelFileError(f"{path}: not a valid ONNX model ({type(exc).__name__}: {exc})") from None
    check_graph_hash(proto, path)
    return proto


def read_onnx_model(path: str | Path) -> OnnxModelInfo:
    """Validate an exported PerceptionModel file -> OnnxModelInfo. Raises ModelFileError (naming
    the file) for a missing or corrupt file, or a graph without our input and output names."""
    path = Path(path)
    return onnx_model_info(load_onnx_proto(path), path)


def onnx_model_info(proto: onnx.ModelProto, path: Path) -> OnnxModelInfo:
    """``read_onnx_model`` of a graph already loaded from ``path`` (which names it in errors)."""
    inputs = tuple(i.name for i in proto.graph.input)
    outputs = tuple(o.name for o in proto.graph.output)
    if inputs != INPUT_NAMES or outputs[: len(OUTPUT_NAMES)] != OUTPUT_NAMES:
        raise ModelFileError(
            f"{path}: ONNX graph has inputs {inputs} and outputs {outputs}, expected {INPUT_NAMES} -> {OUTPUT_NAMES}"
        )
    sizes = {_static_size(i) for i in proto.graph.input}
    input_size = sizes.pop() if len(sizes) == 1 else None
    return OnnxModelInfo(path=path, input_size=input_size, metadata={p.key: p.value for p in proto.metadata_props})
