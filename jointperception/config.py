"""Typed configuration: dataclasses with a commented default per field, loaded from YAML.

One source of truth for every knob. Only ``models.build_model`` reads ``ModelConfig`` and
nothing writes into a config (they are frozen). ``load_config`` rejects unknown keys and
bad values with a message that names the key, e.g. ``train.lr: must be > 0, got -1``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from jointperception.errors import ConfigError
from jointperception.names import did_you_mean


MOTION_PROFILES = ("small", "real")  # data.motion: the profiles of data/motion_profiles.py

@dataclass(frozen=True)
class ModelConfig:
    width: str = "tiny"  # tiny | small | base: channel widths of both branches
    fusion: str = "bidirectional"  # bidirectional | none (ablation: branches exchange no features)
    cost_volumes: bool = False  # decoder levels 32..4 match features warped by the running flow (PWC-Net)

    def validate(self) -> None:
        _choice("model.width", self.width, ("tiny", "small", "base"))
        _choice("model.fusion", self.fusion, ("bidirectional", "none"))


@dataclass(frozen=True)
class DataConfig:
    height: int = 128  # synthetic frame height in pixels (multiple of 32)
    width: int = 160  # synthetic frame width in pixels (multiple of 32)
    train_samples: int = 20000  # pairs per epoch; sample i is rendered from seed train_seed + i
    train_seed: int = 0  # first training seed
    val_samples: int = 256  # validation pairs
    val_seed: int = 10_000_000  # first validation seed; never overlaps training seeds
    max_objects: int = 4  # foreground objects per scene are drawn from 1..max_objects
    max_translation: float = 8.0  # largest per-frame object translation, pixels at this resolution
    motion: str = "small"  # motion profile (data/motion_profiles.py): small (home ground) | real (real-video range)
    photometric: bool = True  # random gain, noise and blur on rendered frames
    random_order: bool = True  # swap the pair half the time (network works in both orders)
    num_workers: int = 1  # DataLoader worker processes rendering scenes on the fly
    photo_textures: tuple[str, ...] = ()  # training split only: image folders or globs whose frames texture layers
    photo_root: str = ""  # folder photo_textures are relative to; "" = shared_data_root() ($JOINTPERCEPTION_DATA)
    photo_holdout: tuple[str, ...] = ()  # sequence-name patterns (fnmatch) never used as textures
    photo_fraction: float = 0.5  # probability that a layer gets a photo crop instead of a procedural texture
    prealign: bool = False  # pre-align pairs as the runtime pipeline does (classical.prealign): residual flow targets

    def validate(self) -> None:
        for key in ("height", "width"):
            value = getattr(self, key)
            _positive(f"data.{key}", value)
            if value % 32:
                raise ConfigError(f"data.{key}: must be a multiple of 32, got {value}")
        _positive("data.train_samples", self.train_samples)
        _positive("data.val_samples", self.val_samples)
        if self.val_seed < self.train_seed + self.train_samples and self.val_seed + self.val_samples > self.train_seed:
            raise ConfigError("data.val_seed: validation seeds overlap the training seeds")
        if not 1 <= self.max_objects <= 4:
            raise ConfigError(f"data.max_objects: must be in 1..4, got {self.max_objects}")
        _positive("data.max_translation", self.max_translation)
        _choice("data.motion", self.motion, MOTION_PROFILES)
        if self.num_workers < 0:
            raise ConfigError(f"data.num_workers: must be >= 0, got {self.num_workers}")
        if not 0.0 <= self.photo_fraction <= 1.0:
            raise ConfigError(f"data.photo_fraction: must be in [0, 1], got {self.photo_fraction}")


# DataConfig keys that shape only the training split: a change of any other key changes the validation split
TRAIN_ONLY_DATA_KEYS = ("train_samples", "train_seed", "num_workers", "photo_textures", "photo_root", "photo_holdout",
                        "photo_fraction")


@dataclass(frozen=True)
class TrainConfig:
    mode: str = "iterative"  # iterative (SegFlow §4.1 branch alternation) | joint (all weights at once)
    #                          | selfsup (Every Frame Counts losses on unlabelled video: train/selfsup_trainer.py)
    #                          | motion_layers (MotionLayerNet on flow, EM loss: train/motion_trainer.py)
    max_steps: int = 6000  # total optimizer steps over all phases
    batch_size: int = 8  # pairs per step and process
    lr: float = 1e-3  # peak learning rate (AdamW)
    min_lr: float = 1e-5  # floor of the cosine decay
    warmup_steps: int = 200  # linear warm-up steps, restarted at each phase switch
    weight_decay: float = 1e-4  # AdamW decoupled weight decay
    grad_clip: float = 5.0  # max global gradient norm
    flow_weight: float = 1.0  # lambda in L = Ls + lambda * Lf (eq. 1 + eq. 2)
    occlusion_weight: float = 0.5  # weight of the occlusion BCE
    eval_every: int = 250  # steps between validation passes
    real_eval_every: int = 0  # steps between real-suite figures in metrics.jsonl (eval/dev_suites.py); 0 = never
    patience: int = 2  # validation passes without improvement before switching branch
    rounds: int = 3  # iterative mode: number of (flow phase, segmentation phase) rounds
    min_phase_steps: int = 500  # a phase lasts at least this many steps
    seed: int = 0  # torch / numpy / python seed
    amp: bool = True  # mixed precision (used on CUDA only)
    log_every: int = 25  # steps between JSONL metric lines
    init_from: str = ""  # model file (or "bundled") to start from instead of random weights; a resumed run ignores it

    def validate(self) -> None:
        _choice("train.mode", self.mode, ("iterative", "joint", "selfsup", "motion_layers"))
        for key in ("max_steps", "batch_size", "eval_every", "rounds", "log_every", "patience"):
            _positive(f"train.{key}", getattr(self, key))
        for key in ("lr", "min_lr", "grad_clip"):
            _positive(f"train.{key}", getattr(self, key))
        if self.min_lr > self.lr:
            raise ConfigError(f"train.min_lr: must be <= train.lr ({self.lr}), got {self.min_lr}")
        for key in ("warmup_steps", "weight_decay", "flow_weight", "occlusion_weight", "min_phase_steps", "seed",
                    "real_eval_every"):
            if getattr(self, key) < 0:
                raise ConfigError(f"train.{key}: must be >= 0, got {getattr(self, key)}")


@dataclass(frozen=True)
class SelfSupConfig:
    """Every Frame Counts self-supervised fine-tuning (train.mode: selfsup)."""

    init_from: str = "bundled"  # model file to start from; "bundled" = models/jointnet_tiny.safetensors; "" = random
    data_root: str = ""  # folder the paths below are relative to; "" = shared_data_root() ($JOINTPERCEPTION_DATA)
    images: tuple[str, ...] = ()  # image folders or globs of image files (one sequence per folder)
    videos: tuple[str, ...] = ()  # video files, one sequence each
    bags: tuple[str, ...] = ()  # rosbag2 bag folders, one sequence each (topic: bag_topic)
    bag_topic: str = "/camera/image_raw"  # sensor_msgs/Image topic read from every bag
    holdout: tuple[str, ...] = ()  # sequence-name patterns (fnmatch) kept out of training for evaluation
    frame_width: int = 320  # frames are resized to this size (the pipeline's network size) before cropping
    frame_height: int = 240
    max_dt: int = 5  # pair gap dt drawn from [1, max_dt] frames (EFC)
    labelled_batch_size: int = 2  # synthetic labelled pairs per step (supervised losses, eq. 8); 0 = none
    consistency_weight: float = 10.0  # lambda_cons (eq. 9)
    occlusion_weight: float = 0.4  # lambda_occ
    smoothness_weight: float = 0.5  # lambda_sm
    occlusion_estimation: bool = True  # OE: per-block occlusion heads, Locc, occlusion-weighted losses
    temporal_consistency: bool = True  # TC: encoder-feature consistency Lcons
    segmentation_mask: bool = True  # O_seg error mask of eq. 5 (with OE)
    teacher_flow_weight: float = 0.0  # distil the teacher's flow where forward-backward consistent (0 = off)
    teacher_flow_source: str = "classical"  # classical: DIS-medium (data/teacher.py); refined: the network's own flow
                                            # of the step after classical.flow_refinement (data/refinement_teacher.py)
    teacher_mask_weight: float = 0.0  # distil the teacher's moving-object mask (0 = off)
    freeze_batchnorm_stats: bool = False  # keep the starting model's BatchNorm running statistics (affine params still train)
    prealign: bool = False  # take each pair's dominant translation out of its second frame, as the runtime pipeline does
    train_branches: tuple[str, ...] = ("segmentation", "flow")  # JointNet branches fine-tuned; the others stay frozen

    @property
    def uses_teacher(self) -> bool:
        return self.teacher_flow_weight > 0 or self.teacher_mask_weight > 0

    @property
    def uses_classical_targets(self) -> bool:
        """The video pairs must carry data/teacher.py's targets (DIS flow and/or the classical mask)."""
        return self.teacher_mask_weight > 0 or (self.teacher_flow_weight > 0 and self.teacher_flow_source == "classical")

    def validate(self) -> None:
        for key in ("frame_width", "frame_height", "max_dt"):
            _positive(f"selfsup.{key}", getattr(self, key))
        if not self.train_branches:
            raise ConfigError("selfsup.train_branches: must name at least one of segmentation, flow")
        for branch in self.train_branches:
            _choice("selfsup.train_branches", branch, ("segmentation", "flow"))  # models.jointnet.BRANCHES (torch-free here)
        _choice("selfsup.teacher_flow_source", self.teacher_flow_source, ("classical", "refined"))
        for key in ("labelled_batch_size", "consistency_weight", "occlusion_weight", "smoothness_weight",
                    "teacher_flow_weight", "teacher_mask_weight"):
            if getattr(self, key) < 0:
                raise ConfigError(f"selfsup.{key}: must be >= 0, got {getattr(self, key)}")


@dataclass(frozen=True)
class MotionConfig:
    """MotionLayerNet and its EM-loss training (train.mode: motion_layers)."""

    num_layers: int = 4  # K motion layers (2..5)
    levels: int = 3  # U-Net levels after the stride-4 stem (input sides: multiples of 2 ** (levels + 1))
    base_width: int = 16  # channels of the first level, doubled per level
    motion_model: str = "quadratic"  # affine (6 params) | quadratic (12 params) per layer
    entropy_weight: float = 0.01  # beta in L = sum g rho(f - f_theta) - beta sum H(g)
    layer_mass_weight: float = 0.05  # gamma: + gamma H(mean_i g_i) merges duplicate layers (0 = the paper's loss)
    irls_iterations: int = 3  # L1 IRLS reweightings of the M-step after the L2 fit
    augment_scale: float = 4.0  # px: amplitude of the random global quadratic flow added in training
    predicted_flow_samples: int = 1000  # training pairs whose flow the joint model predicts (cached)
    joint_model: str = "bundled"  # joint model predicting those flows; "bundled" = models/jointnet_tiny.safetensors
    max_train_minutes: float = 0.0  # stop after this much training wall time (0 = max_steps only)

    def validate(self) -> None:
        if not 2 <= self.num_layers <= 5:
            raise ConfigError(f"motion.num_layers: must be in 2..5, got {self.num_layers}")
        if not 1 <= self.levels <= 5:
            raise ConfigError(f"motion.levels: must be in 1..5, got {self.levels}")
        if self.base_width < 4:
            raise ConfigError(f"motion.base_width: must be >= 4, got {self.base_width}")
        _choice("motion.motion_model", self.motion_model, ("affine", "quadratic"))
        for key in ("entropy_weight", "layer_mass_weight", "irls_iterations", "augment_scale", "predicted_flow_samples",
                    "max_train_minutes"):
            if getattr(self, key) < 0:
                raise ConfigError(f"motion.{key}: must be >= 0, got {getattr(self, key)}")


@dataclass(frozen=True)
class ExperimentConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    selfsup: SelfSupConfig = field(default_factory=SelfSupConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)

    def validate(self) -> None:
        self.model.validate()
        self.data.validate()
        self.train.validate()
        self.selfsup.validate()
        self.motion.validate()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _choice(key: str, value: Any, allowed: tuple[Any, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: must be one of {', '.join(map(str, allowed))}, got {value!r}")


def _positive(key: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{key}: must be > 0, got {value}")


def _build(cls: type, values: Mapping[str, Any], prefix: str) -> Any:
    """Build dataclass ``cls`` from ``values``; unknown keys and wrong types raise ConfigError."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            hint = did_you_mean(str(key), fields)
            raise ConfigError(f"{name}: unknown key{f', {hint}' if hint else ''} (allowed: {', '.join(fields)})")
        default = getattr(cls(), key)
        if dataclasses.is_dataclass(default):
            kwargs[key] = _build(type(default), value, name)
        else:
            kwargs[key] = _coerce(name, value, type(default))
    return cls(**kwargs)


def _coerce(name: str, value: Any, expected: type) -> Any:
    if expected is bool:
        if isinstance(value, bool):
            return value
    elif expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif expected is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif expected is tuple:  # lists of strings, e.g. selfsup.images
        if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
            return tuple(value)
    elif isinstance(value, expected):
        return value
    raise ConfigError(f"{name}: expected {expected.__name__}, got {value!r}")


def config_from_dict(values: Mapping[str, Any]) -> ExperimentConfig:
    """Validated ExperimentConfig from a nested mapping (missing keys take their defaults)."""
    config = _build(ExperimentConfig, values or {}, "")
    config.validate()
    return config


def load_config(path: str | Path) -> ExperimentConfig:
    """Load and validate a YAML experiment config; errors name the file and the key."""
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    try:
        return config_from_dict(values or {})
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
