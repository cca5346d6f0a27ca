"""Data-parallel training under ``torchrun`` (multi-GPU, multi-node) with the same trainer as one process.

``torchrun --nproc_per_node=N stages/train.py <run>`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; the trainer
then joins a process group (NCCL on CUDA, gloo on CPU) and wraps its per-step loss in
DistributedDataParallel. Every rank draws the *same* global batch from the seeded sampler (``train.batch_size``
is the global batch) and keeps its contiguous slice of ``batch_size / world_size`` patches; DDP averages the
gradients, which is exactly the gradient of the mean loss over the global batch. So N processes follow the
single-process trajectory (up to float summation order), and checkpoints, which hold the unwrapped module and
the global sampler/RNG state, resume on any world size.

Rank 0 alone logs to MLflow and writes the DVC outputs (model.pt, curve, metrics, checkpoints). With no
``torchrun`` environment nothing here does anything and training is the plain single-process loop.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, global_batch: int) -> slice:
        """This rank's contiguous slice of a global batch (the batch must split evenly)."""
        if global_batch % self.world_size:
            raise ValueError(f"train.batch_size={global_batch} must be a multiple of the world size "
                             f"({self.world_size} processes) so every rank gets an equal share")
        per = global_batch // self.world_size
        return slice(self.rank * per, (self.rank + 1) * per)

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def mean(self, value: torch.Tensor) -> float:
        """Mean of a scalar over ranks (the global-batch loss, for logging)."""
        if not self.enabled:
            return value.item()
        total = value.detach().clone().reshape(1).to(torch.float64)
        torch.distributed.all_reduce(total)
        return total.item() / self.world_size


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


@contextlib.contextmanager
def distributed(device: torch.device) -> Iterator[DistContext]:
    """Join the torchrun process group for the duration of a training (no-op for a single process).

    On CUDA each process takes the GPU of its ``LOCAL_RANK``. A group that already exists (a launcher that
    initialised it) is used and left alone.
    """
    if not launched_by_torchrun():
        yield DistContext(device=device)
        return
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    created = not dist.is_initialized()
    if created:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        yield DistContext(rank, world, local_rank, device)
    finally:
        if created:
            dist.destroy_process_group()


class LossModule(nn.Module):
    """The per-step loss as a module, so DDP's forward (which arms the gradient all-reduce) runs the
    model's own training loss too (DRCN's recursive supervision), not only ``model(x)``."""

    def __init__(self, model: nn.Module, loss: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]):
        super().__init__()
        self.model = model
        self._loss = loss

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self._loss(self.model, x, target)


def wrap_loss(model: nn.Module, loss: Callable, ctx: DistContext) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``step_loss(x, target)``: the plain loss for one process, the DDP-wrapped one under torchrun."""
    if not ctx.enabled:
        return lambda x, target: loss(model, x, target)
    from torch.nn.parallel import DistributedDataParallel

    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(LossModule(model, loss), device_ids=ids)
