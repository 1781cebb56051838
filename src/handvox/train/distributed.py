"""Several training processes (DDP under ``torchrun``; NCCL on CUDA, gloo on CPU), and the one
process of a plain run, behind one small interface (:class:`Dist`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass
class Dist:
    """This process's place among the run's processes; every collective is a no-op when it runs
    alone (``world == 1``)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owned: bool = False  # setup_distributed started the process group (close() ends it)

    @property
    def main(self) -> bool:
        """The process that writes the run's files and reports."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        """The main process's ``obj`` (picklable), in every process."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Element-wise sums of ``values`` over the processes (float64)."""
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()

    def gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in rank order."""
        if self.world == 1:
            return [obj]
        parts: list = [None] * self.world
        dist.all_gather_object(parts, obj)
        return parts

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """``model`` for training: under DDP (gradients averaged over the processes) when there
        are several."""
        if self.world == 1:
            return model
        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def close(self) -> None:
        """End the process group if :func:`setup_distributed` started it."""
        if self.owned and dist.is_initialized():
            dist.destroy_process_group()


def setup_distributed(device: str) -> tuple[Dist, torch.device]:
    """This process's :class:`Dist` (from ``torchrun``'s environment) and its device
    (``auto``: CUDA when available; under DDP on CUDA, the local rank's GPU)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(), dev
    local = int(os.environ.get("LOCAL_RANK", "0"))
    owned = not dist.is_initialized()
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if owned:
        backend = "nccl" if dev.type == "cuda" else "gloo"
        # Long timeout: rank 0 may write checkpoints while the others wait.
        dist.init_process_group(backend, timeout=timedelta(hours=2))
    if dev.type == "cpu":
        per_node = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // per_node))
    return Dist(dist.get_rank(), dist.get_world_size(), local, owned), dev
