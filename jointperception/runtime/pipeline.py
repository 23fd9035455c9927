"""One code path from a camera frame pair to outputs at camera resolution.

pre:  resize (H, W) -> network size, take the pair's dominant translation out of the second frame
      (``classical.prealign``; added back to the flow after the backend), replicate-pad bottom/right
      to a multiple of NETWORK_STRIDE, normalise;  backend: network-resolution probabilities and flow;
post: variational refinement of the flow on the network grid (``classical.flow_refinement``), motion
      layers (the graph's motion-layer head run again on the refined flow, ``refined_layers``; argmax,
      0 = the largest layer) and the published mask's probability
      (``runtime.motion_layers``; in a stream also carried along the flow by ``runtime.mask_memory``)
      on the network grid; crop the padding, bilinear upsample to (H, W) (nearest for layer ids),
      scale flow u by W/W_net and v by H/H_net, threshold.
The ROS node, ``predict``, ``replay`` and ``bench`` all call ``infer_pair``, which is
``finish(run_network(...))``: with ``pipelined`` the node runs the two halves in two threads, so
the network of the newest pair overlaps the post-processing of the one before
(ros/perception_worker.py).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from jointperception.classical.flow_refinement import refine_flow
from jointperception.classical.prealign import dominant_translation, shift_frame
from jointperception.errors import InputError
from jointperception.models.normalize import NETWORK_STRIDE, normalize_frame
from jointperception.models.weights import DEFAULT_MODEL_PATH
from jointperception.runtime.backends import Backend, create_backend
from jointperception.runtime.mask_memory import MaskMemory
from jointperception.runtime.motion_layers import (
    MASK_SOURCES,
    RESIDUAL_SOURCES,
    fuse_mask_probability,
    residual_mask,
    split_layers,
)
from jointperception.runtime.object_memory import ObjectMemory


@dataclass(frozen=True)
class PairOutputs:
    """Outputs for the first frame of a pair, at camera resolution (H, W); arrays are fresh."""

    mask: np.ndarray  # (H, W) bool, moving / primary object: mask_probability > threshold
    mask_probability: np.ndarray  # (H, W) float32 in [0, 1], fused as the pipeline's mask_source says
    segmentation_probability: np.ndarray  # (H, W) float32 in [0, 1], the segmentation branch
    moving_probability: np.ndarray  # (H, W) float32 in [0, 1], 1 - p(background motion layer)
    residual_probability: np.ndarray | None  # (H, W) float32 in [0, 1], 1 where the flow moves unlike its
    # dominant motion; None when the mask source does not use it (runtime.motion_layers.RESIDUAL_SOURCES)
    flow: np.ndarray  # (H, W, 2) float32, pixels, first -> second
    occlusion: np.ndarray  # (H, W) bool, pixels of first not visible in second
    layers: np.ndarray  # (H, W) uint8 motion-layer ids, 0 = background (the largest layer)
    latency_ms: float  # wall time from run_network to the end of finish: pre + backend + post (+ any wait between)


@dataclass(frozen=True)
class PostSettings:
    """The pipeline settings a pair is finished with, taken when its network pass starts."""

    mask_threshold: float
    occlusion_threshold: float
    mask_source: str
    max_layers: int | None
    refine: bool
    refined_layers: bool  # the motion layers from the refined flow (only with ``refine``)

    @property
    def layers_from_refined_flow(self) -> bool:
        return self.refine and self.refined_layers


@dataclass(frozen=True)
class NetworkPass:
    """A frame pair through pre-processing and the backend (``PerceptionPipeline.run_network``),
    waiting for ``PerceptionPipeline.finish``; arrays on the network grid, not shared with anyone."""

    first_net: np.ndarray  # (h, w, 3) uint8, the first frame at the network size
    second_net: np.ndarray  # (h, w, 3) uint8, the second frame at the network size (not shifted)
    shift: tuple[int, int]  # (dx, dy) px, the pre-alignment taken out of the second frame
    raw: dict[str, np.ndarray]  # backend outputs (1, C, h_pad, w_pad) of the (pre-aligned) pair
    mirrored: dict[str, np.ndarray] | None  # the same of the mirrored pair, unmirrored (flip_average)
    camera_size: tuple[int, int]  # (W, H) of the frames
    settings: PostSettings
    start: float  # time.perf_counter() when the pass began


def padded_size(network_size: tuple[int, int]) -> tuple[int, int]:
    """(W, H) -> (W, H) rounded up to multiples of NETWORK_STRIDE."""
    width, height = network_size
    return -(-width // NETWORK_STRIDE) * NETWORK_STRIDE, -(-height // NETWORK_STRIDE) * NETWORK_STRIDE


def resize_to_network(frame: np.ndarray, network_size: tuple[int, int]) -> np.ndarray:
    """frame (H, W, 3) uint8 RGB -> (h, w, 3) uint8 at the network size (W, H) = (w, h)."""
    width, height = network_size
    if frame.shape[:2] == (height, width):
        return frame
    shrinking = width <= frame.shape[1] and height <= frame.shape[0]
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def preprocess(frame: np.ndarray, network_size: tuple[int, int]) -> np.ndarray:
    """frame (H, W, 3) uint8 RGB -> (1, 3, h_pad, w_pad) float32 normalised network input
    (``normalize_frame`` of the resized, replicate-padded frame)."""
    width, height = network_size
    frame = resize_to_network(frame, network_size)
    pad_w, pad_h = padded_size(network_size)
    if (pad_w, pad_h) != (width, height):
        frame = cv2.copyMakeBorder(frame, 0, pad_h - height, 0, pad_w - width, cv2.BORDER_REPLICATE)
    return normalize_frame(frame)


def _to_camera(planes: np.ndarray, network_size: tuple[int, int], camera_size: tuple[int, int]) -> np.ndarray:
    """(1, C, h_pad, w_pad) -> fresh (H, W, C) float32: crop the padding, bilinear resize."""
    width, height = network_size
    image = planes[0, :, :height, :width].transpose(1, 2, 0)
    if (width, height) == camera_size:
        return np.array(image, dtype=np.float32, order="C")
    resized = cv2.resize(np.ascontiguousarray(image, dtype=np.float32), camera_size, interpolation=cv2.INTER_LINEAR)
    return resized.reshape(camera_size[1], camera_size[0], planes.shape[1])


def restore_flow(flow: np.ndarray, network_size: tuple[int, int], camera_size: tuple[int, int]) -> np.ndarray:
    """flow (1, 2, h_pad, w_pad) network pixels -> (H, W, 2) float32 camera pixels; sizes are (W, H).
    Scaled on the network grid, before the (linear) resize: the same values for fewer multiplications."""
    scale = np.array([camera_size[0] / network_size[0], camera_size[1] / network_size[1]], dtype=np.float32)
    return _to_camera(flow * scale[None, :, None, None], network_size, camera_size)


def restore_probability(prob: np.ndarray, network_size: tuple[int, int], camera_size: tuple[int, int]) -> np.ndarray:
    """prob (1, 1, h_pad, w_pad) -> (H, W) float32 in [0, 1] at camera resolution; sizes are (W, H)."""
    return np.clip(_to_camera(prob, network_size, camera_size)[..., 0], 0.0, 1.0)


def unmirror_outputs(raw: dict[str, np.ndarray], width: int) -> dict[str, np.ndarray]:
    """Backend outputs of a left-right mirrored pair -> outputs in the original frame.

    Only the first ``width`` columns hold the image (the rest is stride padding): they are
    mirrored back, and the flow's u component changes sign (u(x) = -u_mirrored(W - 1 - x)).
    """
    restored = {}
    for name, value in raw.items():
        out = value.copy()
        out[..., :width] = value[..., :width][..., ::-1]
        if name == "flow":
            out[:, 0] *= -1.0
        restored[name] = out
    return restored


def check_frame(frame: object, name: str) -> np.ndarray:
    """Raise InputError unless ``frame`` is an (H, W, 3) uint8 RGB array with H, W > 0."""
    if not isinstance(frame, np.ndarray):
        raise InputError(f"{name}: expected a numpy array, got {type(frame).__name__}")
    if np.issubdtype(frame.dtype, np.floating) and not np.isfinite(frame).all():
        raise InputError(f"{name}: frame contains NaN or infinite values")
    if frame.dtype != np.uint8:
        raise InputError(f"{name}: frame must be uint8 RGB, got dtype {frame.dtype}")
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] == 0 or frame.shape[1] == 0:
        raise InputError(f"{name}: frame must have shape (H, W, 3) RGB, got {frame.shape}")
    return frame


class PerceptionPipeline:
    """Frames in, masks / flow / occlusion / layers out at camera resolution."""

    def __init__(
        self,
        backend: Backend,
        network_size: tuple[int, int] = (320, 240),
        mask_threshold: float = 0.5,
        occlusion_threshold: float = 0.5,
        model_path: Path | None = None,
        flip_average: bool = False,
        mask_source: str = "fused",
        max_layers: int | None = None,
        prealign: bool = True,
        refine: bool = True,
        refined_layers: bool = True,
    ) -> None:
        width, height = network_size
        if width <= 0 or height <= 0:
            raise InputError(f"network size must be positive (W, H), got {network_size}")
        if mask_source not in MASK_SOURCES:
            raise InputError(f"mask source must be one of {', '.join(MASK_SOURCES)}, got {mask_source!r}")
        if max_layers is not None and max_layers < 2:
            raise InputError(f"max_layers must be >= 2 (background + one moving layer), got {max_layers}")
        if backend.input_size is not None and backend.input_size != padded_size(network_size):
            raise InputError(
                f"backend {backend.name} was built for input {backend.input_size}, "
                f"network size {network_size} pads to {padded_size(network_size)}"
            )
        self.backend = backend
        self.network_size = (int(width), int(height))
        self.mask_threshold = mask_threshold
        self.occlusion_threshold = occlusion_threshold
        self.model_path = model_path  # for reports; None when the backend was built by hand
        self.flip_average = flip_average  # average with the mirrored pair ("Ours²", SegFlow §5)
        self.mask_source = mask_source  # runtime.motion_layers: what the published mask thresholds
        self.max_layers = max_layers  # K published layers: smaller moving layers merge into background (None: all)
        self.prealign = prealign  # take the pair's dominant translation out before the network (classical.prealign)
        self.refine = refine  # refine the network's flow variationally (classical.flow_refinement)
        self.refined_layers = refined_layers  # with refine: the motion-layer head again, on the refined flow

    @classmethod
    def from_model_file(
        cls,
        path: str | Path | None = None,
        backend: str = "torch",
        device: str = "cpu",
        network_size: tuple[int, int] = (320, 240),
        flip_average: bool = False,
        mask_source: str = "fused",
        threads: int | None = None,
        precision: str = "fp32",
        motion_model: str | Path | None = None,
        prealign: bool = True,
        refine: bool = True,
        refined_layers: bool = True,
    ) -> PerceptionPipeline:
        """Pipeline over model file ``path`` (None = bundled DEFAULT_MODEL_PATH) on ``backend`` at
        ``precision`` (``create_backend``); ``threads``: ONNX Runtime intra-op threads (None = its
        default; torch threads are global); ``motion_model``: a MotionLayerNet file instead of the
        bundled one (torch backend only)."""
        model_path = Path(path) if path is not None else DEFAULT_MODEL_PATH
        # a fixed network size lets ONNX Runtime / TensorRT use a static-shape graph (faster export)
        options = {} if threads is None else {"threads": threads}
        built = create_backend(backend, model_path, device, input_size=padded_size(network_size), precision=precision,
                               motion_model=motion_model, **options)
        if device != "cpu" and not flip_average:  # every stage on the GPU (torch, ORT CUDA, TensorRT)
            from jointperception.runtime.torch_stages.pipeline import DevicePipeline
            cls = DevicePipeline
        return cls(built, network_size, model_path=model_path, flip_average=flip_average, mask_source=mask_source,
                   prealign=prealign, refine=refine, refined_layers=refined_layers)

    def infer_pair(self, first: np.ndarray, second: np.ndarray,
                   memory: MaskMemory | ObjectMemory | None = None) -> PairOutputs:
        """first, second: (H, W, 3) uint8 RGB of equal size -> PairOutputs of ``first``.

        ``memory``: carry the stream's last published mask along the flow into this one
        (``runtime.mask_memory``); only for pairs (newest, previous) where ``second`` is the frame
        the memory saw last; an ``ObjectMemory`` (``runtime.object_memory``) publishes the followed object."""
        return self.finish(self.run_network(first, second), memory)

    def run_network(self, first: np.ndarray, second: np.ndarray) -> NetworkPass:
        """The first half of ``infer_pair``: checks, resize, pre-alignment, pre-processing and the
        backend (twice with ``flip_average``). Raises InputError for frames ``check_frame`` rejects."""
        start = time.perf_counter()
        check_frame(first, "first frame")
        check_frame(second, "second frame")
        if first.shape != second.shape:
            raise InputError(f"frames differ in size: first {first.shape}, second {second.shape}")
        first_net, second_net = (resize_to_network(frame, self.network_size) for frame in (first, second))
        dx, dy = dominant_translation(first_net, second_net) if self.prealign else (0, 0)
        aligned_net = shift_frame(second_net, dx, dy)
        settings = PostSettings(self.mask_threshold, self.occlusion_threshold, self.mask_source, self.max_layers,
                                self.refine, self.refined_layers)
        layers = not settings.layers_from_refined_flow  # else finish() runs the layer head on the refined flow
        raw = self.backend.infer(preprocess(first_net, self.network_size), preprocess(aligned_net, self.network_size),
                                 layers=layers)
        mirrored = None
        if self.flip_average:
            mirrored = unmirror_outputs(self.backend.infer(
                preprocess(np.ascontiguousarray(first_net[:, ::-1]), self.network_size),
                preprocess(np.ascontiguousarray(aligned_net[:, ::-1]), self.network_size), layers=layers,
            ), self.network_size[0])
        return NetworkPass(first_net, second_net, (dx, dy), raw, mirrored, (first.shape[1], first.shape[0]), settings,
                           start)

    def finish(self, network_pass: NetworkPass, memory: MaskMemory | ObjectMemory | None = None) -> PairOutputs:
        """The second half of ``infer_pair``: motion layers, flow refinement, the published mask
        (and its memory), camera-size outputs; the pass's own settings, not the pipeline's now."""
        settings, raw, camera_size = network_pass.settings, dict(network_pass.raw), network_pass.camera_size
        width, height = self.network_size
        layer_prob = raw.pop("layer_prob", None)  # the graph's layers over its own flow; None: from the refined flow
        mirrored = network_pass.mirrored
        if mirrored is not None:  # probabilities and flow (not thresholded masks) of the pair and its mirror are averaged
            raw = {name: 0.5 * (value + mirrored[name]) for name, value in raw.items()}
        dx, dy = network_pass.shift
        if dx or dy or settings.refine:  # a new array: the refinement writes in place, the pass stays as it was
            raw["flow"] = raw["flow"] + np.array([dx, dy], dtype=np.float32)[None, :, None, None]  # undo the pre-alignment
        if settings.refine:
            raw["flow"][0, :, :height, :width] = refine_flow(
                network_pass.first_net, network_pass.second_net,
                raw["flow"][0, :, :height, :width].transpose(1, 2, 0)).transpose(2, 0, 1)
        if layer_prob is None:  # the graph's layer head again, on the refined (and averaged) flow
            layer_prob = self.backend.motion_layers(raw["flow"])
        ids, moving = split_layers(layer_prob, height, width)
        if mirrored is not None and "layer_prob" in mirrored:
            # layer ids are arbitrary per pass, so the layers come from the unmirrored pass and only
            # their background-independent moving probability is averaged
            moving = 0.5 * (moving + split_layers(mirrored["layer_prob"], height, width)[1])
        if settings.max_layers is not None:
            ids[ids >= settings.max_layers] = 0  # ids rank layers by area: keep the K - 1 largest moving ones
        residual = (residual_mask(raw["flow"], height, width, support=raw["mask_prob"] + moving)
                    if settings.mask_source in RESIDUAL_SOURCES else None)
        fused = fuse_mask_probability(raw["mask_prob"], moving, residual, settings.mask_source)
        if memory is not None:
            fused = fused.copy()
            flow = raw["flow"][0, :, :height, :width].transpose(1, 2, 0)
            occluded = raw["occlusion_prob"][0, 0, :height, :width] > settings.occlusion_threshold
            if isinstance(memory, ObjectMemory):  # first-mask mode: the object's appearance and motion cues
                motion = moving if residual is None else 0.5 * (moving + residual)
                fused[0, 0, :height, :width] = memory.update(
                    raw["mask_prob"][0, 0, :height, :width], motion[0, 0, :height, :width], flow, occluded, camera_size)
            else:
                fused[0, 0, :height, :width] = memory.update(
                    fused[0, 0, :height, :width], flow, occluded, settings.mask_source)
        mask_probability = restore_probability(fused, self.network_size, camera_size)
        occlusion_probability = restore_probability(raw["occlusion_prob"], self.network_size, camera_size)
        return PairOutputs(
            mask=mask_probability > settings.mask_threshold,
            mask_probability=mask_probability,
            segmentation_probability=restore_probability(raw["mask_prob"], self.network_size, camera_size),
            moving_probability=restore_probability(moving, self.network_size, camera_size),
            residual_probability=None if residual is None else restore_probability(residual, self.network_size, camera_size),
            flow=restore_flow(raw["flow"], self.network_size, camera_size),
            occlusion=occlusion_probability > settings.occlusion_threshold,
            layers=cv2.resize(ids, camera_size, interpolation=cv2.INTER_NEAREST) if ids.shape[::-1] != camera_size else ids,
            latency_ms=(time.perf_counter() - network_pass.start) * 1000.0,
        )
