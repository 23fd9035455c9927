"""``PerceptionPipeline`` with every stage after image decode on the backend's device.

run_network: upload the two frames, resize, pre-align (FFT phase correlation), normalise, the
network; finish: undo the pre-alignment, refine the flow, the motion-layer head on the refined
flow, the layers' split, the residual cue, the fusion, the mask memory (a ``TorchMaskMemory``;
a host ``MaskMemory`` is updated on the host), the camera-size restore; only the published
outputs are copied back. The backend runs on tensors (``infer_tensors``: torch, ONNX Runtime
with I/O binding, TensorRT); ``runtime.pipeline.PerceptionPipeline.from_model_file`` picks this
pipeline for any backend on CUDA; on the CPU device it runs the same code (the tests compare it
with the OpenCV / numpy pipeline). Mirrored-pair averaging (``flip_average``) stays on the CPU path.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from jointperception.errors import InputError
from jointperception.runtime.mask_memory import MaskMemory
from jointperception.runtime.motion_layers import RESIDUAL_SOURCES, fuse_mask_probability
from jointperception.runtime.pipeline import NetworkPass, PairOutputs, PerceptionPipeline, PostSettings, check_frame
from jointperception.runtime.torch_stages import frames
from jointperception.runtime.torch_stages.flow_refinement import refine_flow
from jointperception.runtime.torch_stages.layers import split_layers
from jointperception.runtime.torch_stages.mask_memory import TorchMaskMemory
from jointperception.runtime.torch_stages.prealign import dominant_translation
from jointperception.runtime.torch_stages.residual import residual_mask


class DevicePipeline(PerceptionPipeline):
    """Frames in, outputs at camera resolution out, computed on ``backend.device``."""

    def __init__(self, backend: object, *args: object, **kwargs: object) -> None:
        super().__init__(backend, *args, **kwargs)
        if not hasattr(backend, "infer_tensors"):
            raise InputError(f"the device pipeline needs a backend that runs on tensors, not {backend.name}")
        if self.flip_average:
            raise InputError("flip averaging runs on the CPU pipeline only")
        self.device = torch.device(backend.device)

    def run_network(self, first: np.ndarray, second: np.ndarray) -> NetworkPass:
        """See ``PerceptionPipeline.run_network``; the pass holds device tensors: the frames at the
        network size (1, 3, h, w) 0..255, the shift (2,) int64 and the backend outputs (float32)."""
        start = time.perf_counter()
        check_frame(first, "first frame")
        check_frame(second, "second frame")
        if first.shape != second.shape:
            raise InputError(f"frames differ in size: first {first.shape}, second {second.shape}")
        settings = PostSettings(self.mask_threshold, self.occlusion_threshold, self.mask_source, self.max_layers,
                                self.refine, self.refined_layers)
        with torch.inference_mode():
            first_net, second_net = (frames.resize_to_network(frames.upload(frame, self.device), self.network_size)
                                     for frame in (first, second))
            shift = (dominant_translation(first_net, second_net) if self.prealign
                     else torch.zeros(2, dtype=torch.int64, device=self.device))
            aligned = frames.shift_image(second_net, shift)
            outputs = self.backend.infer_tensors(frames.normalise(first_net), frames.normalise(aligned),
                                                 layers=not settings.layers_from_refined_flow)
            raw = {name: value.float().clone() for name, value in outputs.items()}  # CUDA-graph buffers are reused
        return NetworkPass(first_net, second_net, shift, raw, None, (first.shape[1], first.shape[0]), settings, start)

    def finish(self, network_pass: NetworkPass, memory: MaskMemory | TorchMaskMemory | None = None) -> PairOutputs:
        """See ``PerceptionPipeline.finish``."""
        settings, raw, camera_size = network_pass.settings, dict(network_pass.raw), network_pass.camera_size
        width, height = self.network_size
        with torch.inference_mode():
            flow = raw["flow"] + network_pass.shift.float()[None, :, None, None]
            if settings.refine:
                flow[..., :height, :width] = refine_flow(network_pass.first_net, network_pass.second_net,
                                                         flow[..., :height, :width])
            layer_prob = raw.get("layer_prob")
            if layer_prob is None:
                layer_prob = self.backend.motion_layers_tensor(flow).float()
            ids, moving = split_layers(layer_prob, height, width)
            if settings.max_layers is not None:
                ids = torch.where(ids >= settings.max_layers, 0, ids).to(torch.uint8)
            residual = (residual_mask(flow, height, width, support=raw["mask_prob"] + moving)
                        if settings.mask_source in RESIDUAL_SOURCES else None)
            fused = fuse_mask_probability(raw["mask_prob"], moving, residual, settings.mask_source)
            if memory is not None:
                fused = self._remember(fused, flow, raw["occlusion_prob"], memory, settings)
            scale = torch.tensor([camera_size[0] / width, camera_size[1] / height], device=flow.device)
            planes = {
                "mask_probability": fused, "segmentation_probability": raw["mask_prob"], "moving_probability": moving,
                "occlusion": raw["occlusion_prob"], **({} if residual is None else {"residual_probability": residual}),
            }
            restored = {name: frames.to_camera(value, self.network_size, camera_size)[0, 0].clamp(0.0, 1.0)
                        for name, value in planes.items()}
            camera_flow = frames.to_camera(flow * scale[None, :, None, None], self.network_size, camera_size)
            camera_ids = F.interpolate(ids[None, None].float(), size=(camera_size[1], camera_size[0]), mode="nearest")
            host = {name: value.cpu().numpy() for name, value in restored.items()}
            host_flow = camera_flow[0].permute(1, 2, 0).contiguous().cpu().numpy()
            host_ids = camera_ids[0, 0].to(torch.uint8).cpu().numpy()
        return PairOutputs(
            mask=host["mask_probability"] > settings.mask_threshold,
            mask_probability=host["mask_probability"],
            segmentation_probability=host["segmentation_probability"],
            moving_probability=host["moving_probability"],
            residual_probability=host.get("residual_probability"),
            flow=host_flow,
            occlusion=host["occlusion"] > settings.occlusion_threshold,
            layers=host_ids,
            latency_ms=(time.perf_counter() - network_pass.start) * 1000.0,
        )

    def _remember(self, fused: torch.Tensor, flow: torch.Tensor, occlusion_prob: torch.Tensor,
                  memory: MaskMemory | TorchMaskMemory, settings: PostSettings) -> torch.Tensor:
        """The fused probability carried through ``memory`` on the unpadded network grid."""
        width, height = self.network_size
        probability = fused[0, 0, :height, :width]
        field = flow[0, :, :height, :width]
        occluded = occlusion_prob[0, 0, :height, :width] > settings.occlusion_threshold
        if isinstance(memory, TorchMaskMemory):
            filtered = memory.update(probability, field, occluded, settings.mask_source)
        else:  # a host memory (e.g. the node's): its state lives on the host
            filtered = torch.from_numpy(memory.update(
                probability.cpu().numpy(), field.permute(1, 2, 0).cpu().numpy(), occluded.cpu().numpy(),
                settings.mask_source)).to(fused.device)
        fused = fused.clone()
        fused[0, 0, :height, :width] = filtered
        return fused
