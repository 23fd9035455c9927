"""Inference backends: one I/O contract for PyTorch now, ONNX Runtime and TensorRT later.

A backend sees only network-resolution tensors; resizing, padding and thresholding live in
``runtime.pipeline`` so every backend is measured and deployed through the same code path.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from jointperception.errors import InputError
from jointperception.models.weights import DEFAULT_MODEL_PATH, load_model

LOG = logging.getLogger(__name__)

BACKEND_NAMES = ("auto", "torch", "onnxruntime", "tensorrt")
_LATER_BACKENDS = ("onnxruntime", "tensorrt")  # same interface, not shipped in this release


class Backend(Protocol):
    """Runs the network on one normalised image pair.

    ``input_size`` is the (W, H) the backend was built for, or None when it accepts any size
    whose sides are multiples of ``NETWORK_STRIDE`` (eager PyTorch).
    """

    name: str
    device: str
    input_size: tuple[int, int] | None

    def infer(self, image1: np.ndarray, image2: np.ndarray) -> dict[str, np.ndarray]:
        """image1, image2: (1, 3, h, w) float32 normalised -> fresh float32 arrays
        "mask_prob" (1, 1, h, w) in [0, 1] of image1; "flow" (1, 2, h, w) image1 -> image2, pixels
        at network resolution; "occlusion_prob" (1, 1, h, w) in [0, 1] of image1 w.r.t. image2."""
        ...


class TorchBackend:
    """Eager PyTorch backend under ``torch.inference_mode``; optional fp16 and channels_last."""

    name = "torch"
    input_size = None

    def __init__(
        self, model: torch.nn.Module, device: str = "cpu", fp16: bool = False, channels_last: bool = False
    ) -> None:
        check_device(device)
        self.device = device
        self._dtype = torch.float16 if fp16 else torch.float32
        self._memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self._model = model.to(device=device, dtype=self._dtype, memory_format=self._memory_format).eval()

    def _tensor(self, image: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        return tensor.to(device=self.device, dtype=self._dtype).contiguous(memory_format=self._memory_format)

    def infer(self, image1: np.ndarray, image2: np.ndarray) -> dict[str, np.ndarray]:
        """See ``Backend.infer``."""
        with torch.inference_mode():
            out = self._model(self._tensor(image1), self._tensor(image2))
            results = {
                "mask_prob": torch.sigmoid(out["mask_logits"].float()),
                "flow": out["flow"].float(),
                "occlusion_prob": torch.sigmoid(out["occlusion_logits"].float()),
            }
            # every forward allocates new output tensors, so the arrays never alias a later call's
            return {key: value.cpu().numpy() for key, value in results.items()}


def check_device(device: str) -> None:
    """Raise InputError unless ``device`` is "cpu" or an available "cuda[:N]"."""
    if device != "cpu" and not (device == "cuda" or device.startswith("cuda:")):
        raise InputError(f"unknown device {device!r}; use cpu or cuda[:N]")
    if device != "cpu" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but PyTorch sees no CUDA GPU; use --device cpu")


def create_backend(name: str, model_path: str | Path | None = None, device: str = "cpu") -> Backend:
    """Backend ``name`` (auto | torch | onnxruntime | tensorrt) running the model file ``model_path``
    (None = the bundled ``DEFAULT_MODEL_PATH``) on ``device``.

    Raises InputError for an unknown or unavailable backend, ModelFileError for a bad model file.
    """
    if name not in BACKEND_NAMES:
        raise InputError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")
    if name in _LATER_BACKENDS:
        raise InputError(f"backend {name!r} is not available in this release; use --backend torch")
    check_device(device)
    path = Path(model_path) if model_path is not None else DEFAULT_MODEL_PATH
    model, _cfg, _metadata = load_model(path, device=device)
    if name == "auto":
        LOG.info("backend auto: using torch (ONNX Runtime and TensorRT backends come in a later release)")
    return TorchBackend(model, device=device)
