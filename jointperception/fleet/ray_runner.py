"""Fleet tasks on Ray: connect (or start Ray on this machine), run one task per bag with the
given resources, report each outcome as it arrives. The only module that imports Ray (lazily:
``pip install 'jointperception[fleet]'``).

A task whose worker dies (killed, out of memory, node lost) is re-run by Ray up to
``max_retries`` times; when Ray gives up, the bag is reported failed with Ray's cause.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType

from jointperception.errors import InputError
from jointperception.fleet.task import FAILED, BagTask, run_bag_task

# Ray's single-machine switch: with "0" the node's address is loopback, so every server of the
# local instance listens on 127.0.0.1 only. Read when ray is first imported.
SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
Outcome = dict[str, object]  # task.outcome's record


class RayUnavailableError(InputError):
    """Ray cannot be imported; the message says how to install it."""


@dataclass(frozen=True)
class TaskResources:
    cpus: float = 1.0  # Ray CPUs reserved per bag (torch threads: its ceiling)
    gpus: float = 0.0  # Ray GPUs reserved per bag (fractions share a GPU)
    max_retries: int = 3  # re-runs of a bag whose worker died


def import_ray() -> ModuleType:
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError(f"replay-fleet needs Ray ({exc}); install it with: "
                                  "pip install 'jointperception[fleet]'") from exc
    return ray


@contextmanager
def ray_session(address: str | None, num_cpus: int | None = None, num_gpus: int | None = None) -> Iterator[bool]:
    """Connect to the Ray cluster at ``address`` or, with None, start Ray on this machine on
    loopback (``num_cpus`` / ``num_gpus``: None = all); shut it down on exit. A Ray already
    connected in this process is used as it is and left running. Yields whether Ray is local."""
    if address is None:
        os.environ.setdefault(SINGLE_MACHINE_ENV, "0")
    ray = import_ray()
    if ray.is_initialized():
        yield address is None
        return
    if address is None:
        ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False)
    else:
        ray.init(address=address)
    try:
        yield address is None
    finally:
        ray.shutdown()


def check_fits(resources: TaskResources) -> None:
    """InputError when one bag asks for more CPUs or GPUs than the connected Ray has in all (its
    tasks would wait forever, unless the cluster grows)."""
    available = import_ray().cluster_resources()
    for name, wanted in (("CPU", resources.cpus), ("GPU", resources.gpus)):
        if wanted > available.get(name, 0.0):
            raise InputError(f"each bag asks for {wanted:g} {name}s but the Ray cluster has "
                             f"{available.get(name, 0.0):g}; lower --{name.lower()}s-per-bag")


def _lost(task: BagTask, exc: Exception) -> Outcome:
    """The record of a bag whose task raised a bug or whose worker died past the retries."""
    cause = getattr(exc, "cause", None) or exc  # RayTaskError carries the task's own exception
    first_line = (str(cause).strip().splitlines() or [""])[0]
    return {"bag": str(task.bag), "name": task.folder.name, "status": FAILED,
            "error": f"{type(cause).__name__}: {first_line}", "detail": str(exc)}


def run_tasks(tasks: Sequence[BagTask], resources: TaskResources,
              on_outcome: Callable[[Outcome], None]) -> list[Outcome]:
    """Run every task on the connected Ray, calling ``on_outcome`` as each bag finishes;
    returns the outcomes in the order of ``tasks``."""
    ray = import_ray()
    remote = ray.remote(run_bag_task)
    pending = {remote.options(num_cpus=resources.cpus, num_gpus=resources.gpus, max_retries=resources.max_retries,
                              name=f"replay {task.folder.name}").remote(task): task for task in tasks}
    outcomes: dict[str, Outcome] = {}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        task = pending.pop(ready[0])
        try:
            outcome = ray.get(ready[0])
        except ray.exceptions.RayError as exc:  # recorded as the bag's failure, with its cause
            outcome = _lost(task, exc)
        outcomes[task.folder.name] = outcome
        on_outcome(outcome)
    return [outcomes[task.folder.name] for task in tasks]
