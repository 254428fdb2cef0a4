"""Multi-process data parallelism under `torchrun` (gloo on CPU, nccl on CUDA).

Without torchrun's environment (WORLD_SIZE unset or 1) everything here is a no-op, so the
same training function serves one process or many.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from rescorer.device import pick_device as pick_torch_device


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def pick_device(requested: str, context: DistributedContext) -> torch.device:
    """This process's device (rescorer.device.pick_device with the process's local rank)."""
    return pick_torch_device(requested, context.local_rank)


def init_distributed(device_kind: str) -> DistributedContext:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    if not dist.is_initialized():
        backend = "nccl" if device_kind == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return DistributedContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def shutdown_distributed(context: DistributedContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()
