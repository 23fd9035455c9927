"""torchrun support: process-group setup, the DDP wrapper per training phase, metric averaging.

A process belongs to a distributed run when torchrun set RANK and WORLD_SIZE in its
environment; otherwise every helper here is a no-op for a single process.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0  # global rank of this process
    world_size: int = 1  # number of processes
    local_rank: int = 0  # rank on this machine (selects the CUDA device)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1 or dist.is_initialized()

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistributedContext:
    """Join the torchrun process group ("nccl" on CUDA, "gloo" on CPU) when RANK/WORLD_SIZE are set."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistributedContext()
    context = DistributedContext(
        int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", "0"))
    )
    if not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(context.local_rank)
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return context


def shutdown_distributed(context: DistributedContext, *, completed: bool) -> None:
    """Leave the process group; after a ``completed`` run, wait for every rank first.

    Rank 0 finishes later than the others (it writes the final checkpoint and model); a gloo
    rank that tore its group down meanwhile was once seen to abort at exit ("terminate called
    without an active exception"), so the ranks leave together. A failed run skips the
    barrier: the other ranks may never reach it.
    """
    if not (context.enabled and dist.is_initialized()):
        return
    if completed:
        dist.barrier()
    dist.destroy_process_group()


def wrap_for_phase(model: nn.Module, context: DistributedContext, device: torch.device) -> nn.Module:
    """A fresh DDP wrapper over the parameters that currently require grad (or ``model`` itself).

    Rebuilt at every phase switch: DDP registers its gradient hooks on the parameters that
    require grad when it is constructed, so frozen branches are simply left out and every
    trained parameter gets a gradient each step (no find_unused_parameters graph walk).
    """
    if not context.enabled:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def any_rank(flag: int, context: DistributedContext, device: torch.device) -> int:
    """Largest ``flag`` over all ranks (e.g. a received signal number, 0 for none)."""
    if not context.enabled:
        return flag
    value = torch.tensor([flag], dtype=torch.int64, device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return int(value.item())


def average_metrics(metrics: dict[str, float], context: DistributedContext, device: torch.device) -> dict[str, float]:
    """Average ``metrics`` over ranks weighted by ``metrics["num_samples"]``; sums num_samples."""
    if not context.enabled:
        return metrics
    keys = sorted(metrics)
    weight = metrics["num_samples"]
    values = torch.tensor(
        [metrics[k] if k == "num_samples" else metrics[k] * weight for k in keys], dtype=torch.float64, device=device
    )
    dist.all_reduce(values)
    total = values[keys.index("num_samples")].item()
    return {k: (v if k == "num_samples" else v / total) for k, v in zip(keys, values.tolist())}
