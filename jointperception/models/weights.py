"""Model files: safetensors weights with the ModelConfig and a content hash in the header (no
pickle), and trainer checkpoints (``.pt``, ``models.torch_files.read_torch_file``: weights_only)."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from jointperception.config import ModelConfig, MotionConfig, config_from_dict
from jointperception.errors import ConfigError, ModelFileError
from jointperception.integrity import HASH_KEY, check_hash, tensors_sha256
from jointperception.models import build_model, build_motion_model
from jointperception.models.jointnet import JointNet
from jointperception.models.motionnet import MotionLayerNet
from jointperception.models.torch_files import read_torch_file
from jointperception.resources import shipped_file

LOG = logging.getLogger(__name__)

DEFAULT_MODEL_PATH = shipped_file("models/jointnet_tiny.safetensors")
# the motion-layer network reads flow only, so the bundled one serves any joint model
DEFAULT_MOTION_MODEL_PATH = shipped_file("models/motionnet_k4.safetensors")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


def save_weights(path: str | Path, model: torch.nn.Module, model_cfg: ModelConfig, metadata: dict[str, Any]) -> Path:
    """Write ``model``'s state dict to ``path`` (.safetensors) atomically: a ``.<name>.<pid>.tmp``
    beside it (the pattern a training run's start removes when its writer is gone), then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    header = {"model_config": json.dumps(dataclasses.asdict(model_cfg)), "metadata": json.dumps(metadata),
              HASH_KEY: tensors_sha256(state)}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(state, str(tmp), metadata=header)
    os.replace(tmp, path)
    return path


def _model_config(values: Any, path: Path) -> ModelConfig:
    try:
        return config_from_dict({"model": values}).model
    except ConfigError as exc:
        raise ModelFileError(f"{path}: bad model config in file ({exc})") from None


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], ModelConfig, dict[str, Any]]:
    try:
        state = load_file(str(path))
        with open(path, "rb") as handle:
            header_size = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(header_size)).get("__metadata__", {})
        cfg_values = json.loads(header["model_config"])
        metadata = json.loads(header.get("metadata", "{}"))
    except (SafetensorError, OSError, ValueError, KeyError) as exc:
        raise ModelFileError(f"{path}: not a valid jointperception safetensors model ({exc})") from None
    check_hash(path, header.get(HASH_KEY), tensors_sha256(state))
    return state, _model_config(cfg_values, path), metadata


def _read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], ModelConfig, dict[str, Any]]:
    checkpoint = read_torch_file(path)
    try:
        state, cfg_values = checkpoint["model"], checkpoint["model_args"]
    except (KeyError, TypeError) as exc:
        raise ModelFileError(f"{path}: not a valid jointperception checkpoint (no {exc})") from None
    metadata = {"step": checkpoint.get("step"), "source": "checkpoint"}
    return state, _model_config(cfg_values, path), metadata


def load_model(path: str | Path | None = None, device: str | torch.device = "cpu") -> tuple[JointNet, ModelConfig, dict[str, Any]]:
    """Rebuild the network from a model file -> (model in eval mode on ``device``, config, metadata).

    ``path`` None means the bundled model. Raises ModelFileError for a missing, corrupt or
    mismatching file, naming it.
    """
    path = Path(path) if path is not None else DEFAULT_MODEL_PATH
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    reader = _read_checkpoint if path.suffix in CHECKPOINT_SUFFIXES else _read_safetensors
    state, model_cfg, metadata = reader(path)
    model = build_model(model_cfg)
    _check_state_matches(path, state, model.state_dict(), model_cfg)
    model.load_state_dict(state)
    return model.to(device).eval(), model_cfg, metadata


def initial_model(init_from: str, model_cfg: ModelConfig, key: str) -> JointNet:
    """The network a training run starts from: ``init_from`` "" -> a random ``model_cfg`` network;
    "bundled" -> DEFAULT_MODEL_PATH; else that model file or trainer checkpoint.

    A file of the same width and fusion without ``cost_volumes`` starts a network with them
    (``carry_weights``). ConfigError naming the config ``key`` when the
    file holds another width or fusion; ModelFileError for a bad file."""
    if not init_from:
        return build_model(model_cfg)
    model, file_cfg, _ = load_model(None if init_from == "bundled" else init_from)
    if file_cfg == model_cfg:
        return model
    if file_cfg.cost_volumes or dataclasses.replace(file_cfg, cost_volumes=True) != model_cfg:
        raise ConfigError(f"{key}: {init_from} holds a {file_cfg}, the config asks for {model_cfg}")
    network = build_model(model_cfg)
    fresh = carry_weights(model, network)
    LOG.info("%s: started from %s (%s); new: %s", key, init_from, file_cfg, ", ".join(fresh) or "none")
    return network


def carry_weights(source: torch.nn.Module, target: torch.nn.Module) -> list[str]:
    """Copy ``source``'s tensors into ``target`` where names match -> modules left at random.

    Same shape: copied. A conv weight (out, in, k, k) that grew only in its input channels takes
    the source's weights on the leading inputs and zeros on the new ones, so a layer whose new
    inputs are appended (the decoder's cost volumes) computes what it computed before.
    """
    wanted = target.state_dict()
    carried = {}
    for name, tensor in source.state_dict().items():
        if name not in wanted:
            continue
        goal = wanted[name]
        if goal.shape == tensor.shape:
            carried[name] = tensor
        elif tensor.ndim == 4 and goal.shape[0] == tensor.shape[0] and goal.shape[2:] == tensor.shape[2:] \
                and goal.shape[1] > tensor.shape[1]:
            widened = torch.zeros_like(goal)
            widened[:, : tensor.shape[1]] = tensor
            carried[name] = widened
    target.load_state_dict(carried, strict=False)
    return sorted({name.rsplit(".", 2)[0] for name in wanted if name not in carried})


def load_motion_model(path: str | Path = DEFAULT_MOTION_MODEL_PATH, device: str | torch.device = "cpu") -> tuple[MotionLayerNet, MotionConfig, dict[str, Any]]:
    """Rebuild MotionLayerNet from a safetensors file written by ``save_weights(path, net, motion_cfg, meta)``
    -> (model in eval mode on ``device``, MotionConfig, metadata). ModelFileError names a bad file."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    try:
        state = load_file(str(path))
        with open(path, "rb") as handle:
            header = json.loads(handle.read(int.from_bytes(handle.read(8), "little"))).get("__metadata__", {})
        check_hash(path, header.get(HASH_KEY), tensors_sha256(state))
        motion_cfg = config_from_dict({"motion": json.loads(header["model_config"])}).motion
        metadata = json.loads(header.get("metadata", "{}"))
        model = build_motion_model(motion_cfg)
        model.load_state_dict(state)
    except (SafetensorError, OSError, ValueError, KeyError, ConfigError, RuntimeError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelFileError(f"{path}: not a valid MotionLayerNet safetensors model ({reason})") from None
    return model.to(device).eval(), motion_cfg, metadata


def _check_state_matches(path: Path, state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], cfg: ModelConfig) -> None:
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshaped = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or misshaped:
        example = (missing + unexpected + misshaped)[0]
        raise ModelFileError(
            f"{path}: weights do not match a {cfg.width} JointNet ({len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(misshaped)} mis-shaped tensors, e.g. {example!r})"
        )
