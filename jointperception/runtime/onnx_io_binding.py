"""ONNX Runtime on torch tensors: I/O binding of device memory, so a CUDA session reads its inputs
from and writes its outputs into torch CUDA tensors without a host copy (the GPU pipeline,
``runtime.torch_stages.pipeline``). On the CPU provider the tensors go through numpy (zero-copy
for contiguous float32 CPU tensors)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch


def output_shape(declared: list[Any], like: torch.Tensor) -> tuple[int, ...]:
    """An output's declared ONNX shape (1, C, H, W), symbolic H, W taken from ``like`` (1, C', H, W)."""
    return tuple(int(dim) if isinstance(dim, int) else int(like.shape[axis]) for axis, dim in enumerate(declared))


def run_on_tensors(session: Any, inputs: dict[str, torch.Tensor], names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Run ``session`` on ``inputs`` (name -> float32 tensor on the session's device) -> ``names`` ->
    fresh float32 tensors on the same device. CUDA: inputs and outputs bound in place; torch's
    queued work is finished first (ORT runs on its own stream) and ORT's before returning."""
    first = next(iter(inputs.values()))
    if first.device.type == "cpu":
        feeds = {name: np.ascontiguousarray(tensor.numpy(), dtype=np.float32) for name, tensor in inputs.items()}
        return {name: torch.from_numpy(value) for name, value in zip(names, session.run(list(names), feeds))}
    index = first.device.index if first.device.index is not None else torch.cuda.current_device()
    binding = session.io_binding()
    held = {name: tensor.float().contiguous() for name, tensor in inputs.items()}  # alive until the run ends
    for name, tensor in held.items():
        binding.bind_input(name, "cuda", index, np.float32, tuple(tensor.shape), tensor.data_ptr())
    declared = {meta.name: meta.shape for meta in session.get_outputs()}
    outputs = {name: torch.empty(output_shape(declared[name], first), dtype=torch.float32, device=first.device)
               for name in names}
    for name, tensor in outputs.items():
        binding.bind_output(name, "cuda", index, np.float32, tuple(tensor.shape), tensor.data_ptr())
    torch.cuda.synchronize(first.device)
    session.run_with_iobinding(binding)
    binding.synchronize_outputs()
    return outputs
