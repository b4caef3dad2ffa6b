"""Several processes training one model, on PyTorch's own engine: torchrun + DistributedDataParallel (DDP).

    torchrun --standalone --nproc_per_node N -m course_lib train ...

starts N copies of the command; each is one *rank* (0..N-1) of a process group. DDP averages the gradients of
all ranks after every backward pass, so every rank takes the same optimizer step and holds the same weights
(and the same EMA). Here:

    process_group    the group's set-up (gloo on the CPU, NCCL on CUDA) and tear-down around a run; outside
                     torchrun it does nothing, so a single-process run is exactly what it always was
    rank, world_size, is_main    who am I, how many are we (0 and 1 without a group)
    ShardSampler     every rank's share of each epoch: the single-process run's seeded order, dealt round-robin
    share            this rank's rows of a tensor drawn for the whole global batch
    mean_over_ranks, value_of_rank0     the small agreements a step needs (the loss to report, the clock)

How a seed keeps its meaning: every rank draws the random numbers of the whole global batch (t, noise, dropped
labels) from the same seeded generator and keeps its rows, so item i of a global batch gets the same numbers
whatever the number of processes, and the averaged gradient is the single-process one up to rounding.
"""
from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as dist

from .data import EpochShuffle


def launched_by_torchrun() -> bool:
    """True in a process that torchrun started with at least two processes in all."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@contextlib.contextmanager
def process_group(device: torch.device):
    """Join torchrun's process group for the duration of the block and yield this rank's device.

    The backend is NCCL for CUDA (each rank then takes GPU LOCAL_RANK of its machine) and gloo otherwise.
    Outside torchrun (or with one process) nothing is set up and ``device`` comes back unchanged.
    """
    if not launched_by_torchrun():
        yield device
        return
    if device.type == "mps":
        raise ValueError("--device mps: PyTorch has no distributed backend for Apple's MPS; train in one process, "
                         "or under torchrun with --device cpu")
    if device.type == "cuda":
        local_rank = int(os.environ["LOCAL_RANK"])
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"torchrun started more processes on this machine than it has GPUs "
                             f"({torch.cuda.device_count()}): give --nproc_per_node {torch.cuda.device_count()}")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield device
    finally:
        dist.destroy_process_group()


def rank() -> int:
    """This process's number in the group, 0..world_size() - 1 (0 without a group)."""
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    """The number of processes in the group (1 without a group)."""
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """Rank 0 of a torchrun launch, or a lone process: the one that prints progress and writes checkpoints.
    (Read from torchrun's RANK variable, so it holds before the group is set up and after it is gone.)"""
    return int(os.environ.get("RANK", "0")) == 0


def share(draws: torch.Tensor) -> torch.Tensor:
    """This rank's rows of ``draws`` (global batch first): rows rank, rank + world_size, ... (all of it alone)."""
    return draws[rank()::world_size()]


class ShardSampler(EpochShuffle):
    """This rank's share of every epoch: EpochShuffle's seeded order (the same on every rank), cut to whole
    global batches, then dealt round-robin (``share``), so that local batch k of every rank together is
    exactly global batch k of a single-process run with the same seed.

    batch_size is the global batch; it must divide evenly among the ranks.
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0):
        super().__init__(n, seed)
        self.used = n - n % batch_size          # the items a single process uses with drop_last

    def __iter__(self):
        order, self.skip = share(torch.randperm(self.n, generator=self.generator)[:self.used])[self.skip:], 0
        return iter(order.tolist())

    def __len__(self) -> int:
        return self.used // world_size()


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model as every rank calls it: DistributedDataParallel in a process group (which starts every rank
    from rank 0's weights and averages gradients in backward), the model itself otherwise."""
    if world_size() == 1:
        return model
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def _scalar(value: float) -> torch.Tensor:
    """``value`` as a tensor the backend can send: NCCL moves CUDA tensors only."""
    return torch.tensor([value], dtype=torch.float64, device="cuda" if dist.get_backend() == "nccl" else "cpu")


def mean_over_ranks(value: float) -> float:
    """The mean of ``value`` over all ranks (the global batch's loss when each rank has its share's)."""
    if world_size() == 1:
        return value
    total = _scalar(value)
    dist.all_reduce(total)
    return total.item() / world_size()


def value_of_rank0(value: float) -> float:
    """Rank 0's ``value`` on every rank (one clock decides when a time budget ends, or ranks would wait forever)."""
    if world_size() == 1:
        return value
    shared = _scalar(value)
    dist.broadcast(shared, 0)
    return shared.item()
