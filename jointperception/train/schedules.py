"""Learning-rate schedule and the SegFlow iterative branch alternation (SegFlow §4.1).

``get_lr`` is a pure function of the step inside the current phase (nanoGPT): linear warm-up,
then a cosine decay to ``min_lr``, restarted at every phase switch. ``BranchSchedule`` is the
state machine that decides which branch trains: flow -> segmentation -> flow ... for ``rounds``
rounds, switching when the phase's validation metric has stopped improving ("stop training the
current branch when the error on the validation set reaches a convergence").
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jointperception.config import TrainConfig

ITERATIVE_PHASES = ("flow", "segmentation")  # order of the phases inside one round
JOINT_PHASE = "joint"
MIN_RELATIVE_IMPROVEMENT = 0.01  # a validation metric must drop by 1 % to count as an improvement


def get_lr(step: int, *, peak_lr: float, min_lr: float, warmup_steps: int, decay_steps: int) -> float:
    """Learning rate at ``step`` steps into a phase (0-based).

    lr = peak * (step + 1) / (warmup + 1)                       for step < warmup
    lr = min + (peak - min) * (1 + cos(pi * r)) / 2,  r = (step - warmup) / (decay - warmup)
    lr = min                                                     for step >= decay
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if step < warmup_steps:
        return peak_lr * (step + 1) / (warmup_steps + 1)
    if step >= decay_steps:
        return min_lr
    ratio = (step - warmup_steps) / (decay_steps - warmup_steps)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (peak_lr - min_lr)


def phase_metric(phase: str, metrics: Mapping[str, float]) -> float:
    """The validation error that decides a phase switch (lower is better).

    flow: end-point error ``epe``; segmentation: ``1 - mask_j``; joint: ``selection_score``.
    """
    if phase == "flow":
        return float(metrics["epe"])
    if phase == "segmentation":
        return 1.0 - float(metrics["mask_j"])
    return selection_score(metrics)


def selection_score(metrics: Mapping[str, float], flow_scale: float = 8.0) -> float:
    """Score used to pick ``best.pt`` (lower is better): (1 - J) + epe / flow_scale.

    ``flow_scale`` (pixels) puts both errors in roughly [0, 1]; the trainer passes the largest
    synthetic translation, so an epe of one full object motion weighs as much as J = 0.
    """
    return (1.0 - float(metrics["mask_j"])) + float(metrics["epe"]) / flow_scale


@dataclass
class BranchSchedule:
    """Which branch trains at each step; ``to_dict``/``from_dict`` round-trip it for checkpoints.

    Iterative mode: phases flow, segmentation, flow, ... (2 * rounds phases); a phase ends after
    ``patience`` evaluations without improvement, once it has run ``min_phase_steps`` steps, or
    when it has run its share of the budget (``decay_steps``), whichever comes first.
    Joint mode: a single "joint" phase trains both branches until ``max_steps``.
    """

    mode: str  # iterative | joint
    rounds: int  # (flow, segmentation) rounds in iterative mode
    patience: int  # evaluations without improvement before a switch
    min_phase_steps: int  # a phase lasts at least this many steps
    max_steps: int  # the run stops here whatever the phase
    phase_index: int = 0  # index into ``phases``
    phase_start_step: int = 0  # global step at which the current phase began
    best_metric: float = math.inf  # best phase metric seen in the current phase
    bad_evaluations: int = 0  # evaluations since the last improvement
    finished: bool = False  # every phase has run

    def __post_init__(self) -> None:
        if self.mode not in ("iterative", "joint"):
            raise ValueError(f"mode must be iterative or joint, got {self.mode!r}")
        if self.rounds < 1 or self.patience < 1 or self.min_phase_steps < 0 or self.max_steps < 1:
            raise ValueError(f"invalid schedule limits: {self}")

    @classmethod
    def from_config(cls, train: TrainConfig) -> BranchSchedule:
        return cls(train.mode, train.rounds, train.patience, train.min_phase_steps, train.max_steps)

    @property
    def phases(self) -> tuple[str, ...]:
        return ITERATIVE_PHASES * self.rounds if self.mode == "iterative" else (JOINT_PHASE,)

    @property
    def phase(self) -> str:
        """Current phase name: "flow", "segmentation" or "joint" (the last one once finished)."""
        return self.phases[min(self.phase_index, len(self.phases) - 1)]

    @property
    def round(self) -> int:
        """1-based round of the current phase."""
        return min(self.phase_index, len(self.phases) - 1) // len(ITERATIVE_PHASES) + 1

    @property
    def branches(self) -> tuple[str, ...]:
        """Branches whose weights train in the current phase."""
        return ("segmentation", "flow") if self.phase == JOINT_PHASE else (self.phase,)

    @property
    def decay_steps(self) -> int:
        """Cosine horizon of one phase: its share of ``max_steps``, at least ``min_phase_steps``."""
        return max(self.min_phase_steps, self.max_steps // len(self.phases), 1)

    def phase_step(self, step: int) -> int:
        """Steps run in the current phase when the global step counter is ``step``."""
        return step - self.phase_start_step

    def done(self, step: int) -> bool:
        return self.finished or step >= self.max_steps

    def report(self, step: int, metric: float) -> bool:
        """Record the phase metric of an evaluation after ``step`` steps; True if the phase ended."""
        if self.finished:
            return False
        if self.best_metric == math.inf or metric < self.best_metric * (1.0 - MIN_RELATIVE_IMPROVEMENT):
            self.best_metric, self.bad_evaluations = metric, 0
        else:
            self.bad_evaluations += 1
        plateau = self.bad_evaluations >= self.patience and self.phase_step(step) >= self.min_phase_steps
        # a phase that keeps improving still ends once it has used its share of max_steps, so every
        # branch trains within the budget (a slow steady flow phase would otherwise take it all)
        budget_spent = self.phase_step(step) >= self.decay_steps
        if self.mode == "joint" or not (plateau or budget_spent):
            return False
        self.phase_index += 1
        self.phase_start_step, self.best_metric, self.bad_evaluations = step, math.inf, 0
        self.finished = self.phase_index >= len(self.phases)
        return True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> BranchSchedule:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown schedule keys {sorted(unknown)}")
        return cls(**dict(values))
