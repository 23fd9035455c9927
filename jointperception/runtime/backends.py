"""Inference backends: one I/O contract for PyTorch, ONNX Runtime and TensorRT.

A backend sees only network-resolution tensors; resizing, padding and thresholding live in
``runtime.pipeline`` so every backend is measured and deployed through the same code path.
Every backend runs the same fused graph, ``models.perception.PerceptionModel``.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from jointperception.errors import InputError
from jointperception.export import tensorrt as tensorrt_export
from jointperception.export.tensorrt import (
    TensorRTEngineError,
    TensorRTUnavailableError,
)
from jointperception.models.motionnet import MotionLayerNet
from jointperception.models.perception import INPUT_NAMES, JOINT_OUTPUT_NAMES, OUTPUT_NAMES, PerceptionModel
from jointperception.models.weights import (
    DEFAULT_MODEL_PATH,
    load_model,
    load_motion_model,
)
from jointperception.runtime import onnxruntime_backend
from jointperception.runtime.onnxruntime_backend import OnnxRuntimeBackend
from jointperception.runtime.tensorrt_backend import ENGINE_SUFFIXES, TensorRTBackend

LOG = logging.getLogger(__name__)

BACKEND_NAMES = ("auto", "torch", "onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
# what each backend family runs besides fp32 (TensorRT: fp32, fp16, int8 engines)
_PRECISIONS_OF = {"torch": ("fp32", "fp16"), "onnxruntime": ("fp32", "int8"), "tensorrt": PRECISIONS}
CUDA_GRAPH_WARMUP = 3  # eager runs before a CUDA graph is captured


class Backend(Protocol):
    """Runs the network on one normalised image pair.

    ``input_size`` is the (W, H) the backend was built for, or None when it accepts any size
    whose sides are multiples of ``NETWORK_STRIDE`` (eager PyTorch, dynamic-shape ONNX).
    """

    name: str
    device: str
    input_size: tuple[int, int] | None

    def infer(self, image1: np.ndarray, image2: np.ndarray, layers: bool = True) -> dict[str, np.ndarray]:
        """image1, image2: (1, 3, h, w) float32 normalised -> fresh float32 arrays
        "mask_prob" (1, 1, h, w) in [0, 1] of image1; "flow" (1, 2, h, w) image1 -> image2, pixels
        at network resolution; "occlusion_prob" (1, 1, h, w) in [0, 1] of image1 w.r.t. image2;
        with ``layers``, "layer_prob" (1, K, h, w) softmax over K motion layers of image1 (without,
        the backend may skip the motion-layer head)."""
        ...

    def motion_layers(self, flow: np.ndarray) -> np.ndarray:
        """The graph's motion-layer head alone: flow (1, 2, h, w) float32 pixels at network resolution
        -> fresh (1, K, h, w) float32 "layer_prob" (as ``infer`` gives for its own flow)."""
        ...


class TorchBackend:
    """Eager PyTorch backend under ``torch.inference_mode``: PerceptionModel(model, motion_net).

    model: the JointNet; motion_net: the MotionLayerNet over its flow (None = the bundled one);
    motion_stride: its flow pooling (None = ``motion_stride_for`` each input's width).

    channels_last: run convolutions in NHWC memory format (CPU or CUDA).
    fp16: half-precision weights and activations (CUDA only; outputs are returned as float32).
    cuda_graphs: after ``CUDA_GRAPH_WARMUP`` eager runs on a side stream, capture one forward
        pass into a ``torch.cuda.CUDAGraph`` over static input and output buffers and replay it
        (CUDA only; recaptured when the input shape changes). Inputs are copied into the static
        buffers and outputs copied out, so arrays returned earlier are never overwritten.
    """

    name = "torch"
    input_size = None

    def __init__(
        self,
        model: torch.nn.Module,
        device: str = "cpu",
        fp16: bool = False,
        channels_last: bool = False,
        cuda_graphs: bool = False,
        motion_net: MotionLayerNet | None = None,
        motion_stride: int | None = None,
    ) -> None:
        check_device(device)
        for flag, wanted in (("fp16", fp16), ("cuda_graphs", cuda_graphs)):
            if wanted and device == "cpu":
                raise InputError(f"torch backend: {flag} needs a CUDA device, not cpu (the CPU backend runs float32)")
        self.device = device
        self.precision = "fp16" if fp16 else "fp32"
        self.channels_last = channels_last
        self.cuda_graphs = cuda_graphs
        self._dtype = torch.float16 if fp16 else torch.float32
        self._memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if motion_net is None:
            motion_net = load_motion_model()[0]
        fused = PerceptionModel(model, motion_net, motion_stride)
        self._model = fused.to(device=device, dtype=self._dtype, memory_format=self._memory_format).eval()
        self._graph: CapturedGraph | None = None

    def _tensor(self, image: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        return tensor.to(device=self.device, dtype=self._dtype).contiguous(memory_format=self._memory_format)

    def infer(self, image1: np.ndarray, image2: np.ndarray, layers: bool = True) -> dict[str, np.ndarray]:
        """See ``Backend.infer``; a CUDA graph always holds the whole fused graph."""
        with torch.inference_mode():
            outputs = self.infer_tensors(self._tensor(image1), self._tensor(image2), layers)
            # .cpu() copies every output into new host memory: results never alias a later call's
            return {name: value.float().cpu().numpy() for name, value in outputs.items()}

    def infer_tensors(self, image1: torch.Tensor, image2: torch.Tensor, layers: bool = True) -> dict[str, torch.Tensor]:
        """``infer`` on tensors already on this backend's device, (1, 3, H, W) float32; outputs stay
        there, in the backend's dtype (with CUDA graphs: the static buffers, valid until the next call)."""
        with torch.inference_mode():
            inputs = tuple(image.to(self._dtype).contiguous(memory_format=self._memory_format) for image in (image1, image2))
            if self.cuda_graphs:
                if self._graph is None or self._graph.shape != tuple(inputs[0].shape):
                    self._graph = CapturedGraph(self._model, inputs[0])
                outputs = self._graph.run(*inputs)
            else:
                outputs = self._model(*inputs) if layers else self._model.joint_outputs(*inputs)
            return dict(zip(OUTPUT_NAMES if layers else JOINT_OUTPUT_NAMES, outputs))

    def motion_layers_tensor(self, flow: torch.Tensor) -> torch.Tensor:
        """``motion_layers`` on a (1, 2, h, w) float32 tensor on this backend's device; the result stays there."""
        with torch.inference_mode():
            return self._model.layer_probabilities(flow.to(self._dtype).contiguous(memory_format=self._memory_format))

    def motion_layers(self, flow: np.ndarray) -> np.ndarray:
        """See ``Backend.motion_layers``."""
        with torch.inference_mode():
            return self._model.layer_probabilities(self._tensor(flow)).float().cpu().numpy()


class CapturedGraph:
    """One CUDA graph of ``model`` over static buffers shaped and typed like ``example`` (B, 3, H, W)."""

    def __init__(self, model: torch.nn.Module, example: torch.Tensor) -> None:
        self.shape = tuple(example.shape)
        self._inputs = tuple(torch.zeros_like(example) for _ in INPUT_NAMES)
        device = example.device
        with torch.cuda.device(device):  # capture on the model's GPU, whichever is current
            # warm-up on a side stream (lazy cuDNN / allocator initialisation must not be captured)
            side = torch.cuda.Stream(device=device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for _ in range(CUDA_GRAPH_WARMUP):
                    model(*self._inputs)
            torch.cuda.current_stream(device).wait_stream(side)
            self._graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self._graph):
                self._outputs = model(*self._inputs)

    def run(self, image1: torch.Tensor, image2: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Copy the inputs into the static buffers, replay; -> the static outputs (copy them out
        before the next run)."""
        for static, image in zip(self._inputs, (image1, image2)):
            static.copy_(image)
        with torch.cuda.device(self._inputs[0].device):
            self._graph.replay()
        return self._outputs


def check_device(device: str) -> None:
    """Raise InputError unless ``device`` is "cpu" or an available "cuda[:N]"."""
    if device != "cpu" and not (device == "cuda" or device.startswith("cuda:")):
        raise InputError(f"unknown device {device!r}; use cpu or cuda[:N]")
    if device != "cpu" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but PyTorch sees no CUDA GPU; use --device cpu")


def _torch_cuda_unavailable(device: str) -> str | None:
    if device == "cpu":
        return "device is cpu"
    return None if torch.cuda.is_available() else "PyTorch sees no CUDA GPU"


def _ort_cuda_unavailable(device: str) -> str | None:
    return "device is cpu" if device == "cpu" else onnxruntime_backend.unavailable_reason(device)


def create_backend(
    name: str,
    model_path: str | Path | None = None,
    device: str = "cpu",
    *,
    threads: int = onnxruntime_backend.DEFAULT_THREADS,
    input_size: tuple[int, int] | None = None,
    cache_dir: str | Path | None = None,
    precision: str = "fp32",
    motion_model: str | Path | None = None,
) -> Backend:
    """Backend ``name`` (auto | torch | onnxruntime | tensorrt) running the model file ``model_path``
    (None = the bundled ``DEFAULT_MODEL_PATH``; .onnx for onnxruntime) on ``device``.

    auto tries tensorrt, onnxruntime-cuda, torch-cuda, onnxruntime-cpu, torch-cpu in that order and
    logs, in one line, the backend it uses and why it skipped each one before it (a warning when
    a GPU was requested and it falls back to the CPU); a TensorRT engine that cannot be built or
    loaded for the model is skipped with its reason. ``threads`` (ONNX Runtime intra-op threads)
    applies to onnxruntime; ``input_size`` ((W, H) of a static ONNX export / TensorRT engine,
    None = dynamic ONNX) and ``cache_dir`` (ONNX exports and TensorRT engines, keyed by content)
    to onnxruntime and tensorrt. ``precision``: fp32 everywhere; fp16 on torch (CUDA) and
    tensorrt; int8 on onnxruntime (CPU, quantised convolutions) and tensorrt (a calibrated engine
    from ``build-engine``); auto skips the candidates that cannot run it. ``motion_model``: a
    MotionLayerNet file to fuse instead of the bundled one (torch only: exports and engines fuse the
    bundled one). Raises InputError for an unknown or unavailable backend or precision,
    ModelFileError for a bad model file.
    """
    if name not in BACKEND_NAMES:
        raise InputError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if name != "auto" and precision not in _PRECISIONS_OF[name]:
        raise InputError(f"backend {name} runs {', '.join(_PRECISIONS_OF[name])}, not {precision}")
    if motion_model is not None and name != "torch":
        raise InputError(f"a motion model other than the bundled one needs backend torch, not {name} "
                         "(ONNX exports and TensorRT engines fuse the bundled one)")
    path = Path(model_path) if model_path is not None else DEFAULT_MODEL_PATH

    def torch_backend(torch_device: str) -> Backend:
        check_device(torch_device)
        if path.suffix == ".onnx":
            raise InputError(f"{path}: the torch backend needs a .safetensors or checkpoint model, not ONNX")
        motion_net = load_motion_model(motion_model)[0] if motion_model is not None else None
        return TorchBackend(load_model(path, device=torch_device)[0], device=torch_device, fp16=precision == "fp16",
                            motion_net=motion_net)

    def ort_backend(ort_device: str) -> Backend:
        return OnnxRuntimeBackend(path, ort_device, threads=threads, input_size=input_size, cache_dir=cache_dir,
                                  precision=precision)

    def trt_backend() -> Backend:
        return TensorRTBackend(path, device, precision=precision, input_size=input_size, cache_dir=cache_dir)

    if name == "torch":
        return torch_backend(device)
    if name == "onnxruntime":
        return ort_backend(device)
    if name == "tensorrt":
        reason = tensorrt_export.unavailable_reason(device)
        if reason is not None:
            raise InputError(f"backend tensorrt unavailable: {reason}; use --backend onnxruntime or torch")
        return trt_backend()
    onnx_only = "model is ONNX" if path.suffix == ".onnx" else None  # torch needs the weights
    candidates: list[tuple[str, str | None, Callable[[], Backend]]] = [
        ("onnxruntime-cuda", _ort_cuda_unavailable(device), lambda: ort_backend(device)),
        ("torch-cuda", onnx_only or _torch_cuda_unavailable(device), lambda: torch_backend(device)),
        ("onnxruntime-cpu", onnxruntime_backend.unavailable_reason("cpu"), lambda: ort_backend("cpu")),
        ("torch-cpu", onnx_only, lambda: torch_backend("cpu")),
    ]
    order = " > ".join(["tensorrt"] + [label for label, _reason, _build in candidates])
    skipped: list[str] = []
    trt_reason = tensorrt_export.unavailable_reason(device)
    if trt_reason is None and input_size is None and path.suffix not in ENGINE_SUFFIXES:
        trt_reason = "no input size given (TensorRT builds one engine per size)"
    if trt_reason is None:
        try:
            backend = trt_backend()
        except (TensorRTUnavailableError, TensorRTEngineError) as exc:  # unimportable, or cannot run this model
            trt_reason = str(exc)
        else:
            LOG.info("backend auto: tensorrt (order %s)", order)
            return backend
    skipped.append(f"tensorrt: {trt_reason}")
    for label, reason, build in candidates:
        family, _sep, where = label.partition("-")
        if reason is None and precision not in _PRECISIONS_OF[family]:
            reason = f"no {precision}"
        elif reason is None and (family, precision, where) in (("torch", "fp16", "cpu"), ("onnxruntime", "int8", "cuda")):
            reason = f"{precision} not on {where}"
        if reason is not None:
            skipped.append(f"{label}: {reason}")
            continue
        backend = build()  # a bad model file raises here, before anything is logged
        fallback = device != "cpu" and label.endswith("-cpu")
        (LOG.warning if fallback else LOG.info)(
            "backend auto: %s%s (order %s; skipped %s)",
            label, f", falling back from {device}" if fallback else "", order, "; ".join(skipped),
        )
        return backend
    raise InputError(f"backend auto: nothing can run {path} (skipped {'; '.join(skipped)})")
