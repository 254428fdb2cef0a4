"""Multi-process data parallelism under `torchrun` (gloo on CPU, nccl on CUDA).

Without torchrun's environment (WORLD_SIZE unset or 1) everything here is a no-op, so the
same training function serves one process or many.

The gradients are exchanged here after each backward pass rather than by
DistributedDataParallel. Under DDP, whose reducer hands sparse gradients (the embedding rows,
NCE's output rows) to the backend's sparse all-reduce, a rank crashed now and then on CPU with
gloo (a segmentation fault in the backward pass, or glibc's "malloc(): unaligned tcache chunk
detected"); the cause was not isolated, so that path is not used. Here every exchange is a
collective of dense tensors: the dense gradients flat in one all-reduce, and each sparse
gradient as its rows gathered from every rank after the row counts (each rank's rows padded to
the largest count), so the update is the mean over ranks, as DDP's is.
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


def synchronize_parameters(module: torch.nn.Module, context: DistributedContext) -> None:
    """Every rank starts from rank 0's parameters and buffers (as DistributedDataParallel does)."""
    if not context.enabled:
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def average_gradients(parameters: list[torch.nn.Parameter], context: DistributedContext) -> None:
    """Replace each parameter's gradient by its mean over the ranks, in place.

    `parameters` must be the same list, in the same order, on every rank. A parameter without
    a gradient on this rank counts as a zero gradient, so the ranks' collectives always match;
    it gets the mean only where some rank had one. Sparse gradients stay sparse.
    """
    if not context.enabled:
        return
    device = _collective_device()
    # per parameter: has a sparse gradient on some rank, has a dense one on some rank
    kinds = torch.tensor([[int(p.grad is not None and p.grad.is_sparse), int(p.grad is not None and not p.grad.is_sparse)]
                          for p in parameters], dtype=torch.int64, device=device).reshape(-1, 2)
    dist.all_reduce(kinds, op=dist.ReduceOp.MAX)
    if bool((kinds.sum(1) > 1).any()):
        raise RuntimeError("the ranks disagree on which gradients are sparse; every rank must run the same model")
    is_sparse = kinds[:, 0].tolist()
    _average_dense([p for p, s in zip(parameters, is_sparse, strict=True) if not s], context)
    for p in (p for p, s in zip(parameters, is_sparse, strict=True) if s):
        grad = p.grad if p.grad is not None else torch.sparse_coo_tensor(
            torch.zeros((1, 0), dtype=torch.int64, device=p.device), p.new_zeros((0, *p.shape[1:])), p.shape)
        p.grad = _averaged_sparse(grad, context)


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def _average_dense(parameters: list[torch.nn.Parameter], context: DistributedContext) -> None:
    if not parameters:
        return
    present = torch.tensor([float(p.grad is not None) for p in parameters], device=parameters[0].device)
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in parameters])
    flat = torch.cat([flat, present])
    dist.all_reduce(flat)
    flat[:-len(parameters)] /= context.world_size
    offset = 0
    for p, anywhere in zip(parameters, flat[-len(parameters):].tolist(), strict=True):
        n = p.numel()
        if anywhere > 0:
            p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def _averaged_sparse(grad: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """The mean over ranks of one sparse (COO) gradient: every rank's rows gathered, then summed."""
    grad = grad.coalesce()
    indices, values = grad.indices(), grad.values()  # (sparse_dim, nnz), (nnz, *dense)
    count = torch.tensor([values.shape[0]], dtype=torch.int64, device=values.device)
    counts = [torch.zeros_like(count) for _ in range(context.world_size)]
    dist.all_gather(counts, count)
    sizes = [int(c) for c in counts]
    longest = max(sizes)
    padded_indices = indices.new_zeros((indices.shape[0], longest))
    padded_indices[:, :values.shape[0]] = indices
    padded_values = values.new_zeros((longest, *values.shape[1:]))
    padded_values[:values.shape[0]] = values
    all_indices = [torch.empty_like(padded_indices) for _ in sizes]
    all_values = [torch.empty_like(padded_values) for _ in sizes]
    dist.all_gather(all_indices, padded_indices)
    dist.all_gather(all_values, padded_values)
    merged = torch.sparse_coo_tensor(
        torch.cat([i[:, :n] for i, n in zip(all_indices, sizes, strict=True)], dim=1),
        torch.cat([v[:n] for v, n in zip(all_values, sizes, strict=True)]) / context.world_size,
        grad.shape,
    )
    return merged.coalesce()


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
