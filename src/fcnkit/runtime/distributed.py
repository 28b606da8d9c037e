"""Multi-process training on PyTorch's own machinery: torchrun + DistributedDataParallel.

fcnkit never spawns its own workers. A run is distributed when torchrun (or
``fcnkit train --nproc N``, which calls torchrun's elastic launch API) set ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` in the environment::

    torchrun --standalone --nproc-per-node 2 -m fcnkit train --data synth:DIR --epochs 2
    fcnkit train --nproc 2 --data synth:DIR --epochs 2

The process-group backend follows the device (gloo for CPU, nccl for CUDA; never
hard-coded). Training data is sharded by ``DistributedSampler`` (reshuffled every epoch by
``set_epoch``); evaluation data by :class:`ShardedEvalSampler`, which neither pads nor
duplicates, so the confusion matrices summed with ``all_reduce`` equal a single-process
evaluation exactly.
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.launcher.api import LaunchConfig, elastic_launch
from torch.utils.data import Sampler

from fcnkit.errors import InputError, first_line

logger = logging.getLogger(__name__)

# Seconds a collective (and the rendezvous) may wait before failing with an error instead
# of hanging; override with FCNKIT_DIST_TIMEOUT.
DEFAULT_TIMEOUT_S = 300


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job.

    Attributes:
        rank: global rank (0 when not distributed).
        world_size: number of processes (1 when not distributed).
        local_rank: rank on this node; selects the CUDA device.
        distributed: True when a process group was initialised.
        backend: ``"gloo"``, ``"nccl"`` or ``""``.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    distributed: bool = False
    backend: str = ""

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that logs, shows progress and writes files."""
        return self.rank == 0


#: The variables torchrun sets that fcnkit reads as integers, with their least value.
TORCHRUN_INT_VARIABLES = {"WORLD_SIZE": 1, "RANK": 0, "LOCAL_RANK": 0, "LOCAL_WORLD_SIZE": 1}


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    """The integer environment variable ``name`` (``default`` when unset or empty).

    The one parser of torchrun's variables (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
    ``LOCAL_WORLD_SIZE``): whoever reads one calls this.

    Raises:
        InputError: the value is not an integer >= ``minimum`` (one line naming the
            variable).
    """
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise InputError(f"environment variable {name}={text[:40]!r} is not an integer >= "
                         f"{minimum}; unset it or launch with torchrun")
    return value


def check_env() -> None:
    """Parse every torchrun variable that is set (:data:`TORCHRUN_INT_VARIABLES`) and
    check ``RANK < WORLD_SIZE``, so that a bad one is named before any work starts.

    Raises:
        InputError: one line naming the variable.
    """
    values = {name: env_int(name, minimum, minimum=minimum)
              for name, minimum in TORCHRUN_INT_VARIABLES.items()}
    for rank, world in (("RANK", "WORLD_SIZE"), ("LOCAL_RANK", "LOCAL_WORLD_SIZE")):
        if rank in os.environ and world in os.environ and values[rank] >= values[world]:
            raise InputError(f"environment variable {rank}={values[rank]} must be below "
                             f"{world}={values[world]}; unset both or launch with torchrun")


def env_world_size() -> int:
    """``WORLD_SIZE`` set by torchrun, or 1 when the process was not launched by it."""
    return env_int("WORLD_SIZE", 1, minimum=1)


def launched_by_torchrun() -> bool:
    """True when RANK / WORLD_SIZE come from torchrun (or an equivalent launcher)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def backend_for(device: str | torch.device) -> str:
    """Process-group backend for a device: nccl for CUDA, gloo for everything else."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def timeout_seconds() -> int:
    """Collective/rendezvous timeout: ``$FCNKIT_DIST_TIMEOUT`` or :data:`DEFAULT_TIMEOUT_S`."""
    text = os.environ.get("FCNKIT_DIST_TIMEOUT", str(DEFAULT_TIMEOUT_S))
    try:
        value = int(text)
    except ValueError:
        raise InputError(
            f"FCNKIT_DIST_TIMEOUT={text!r} is not a whole number of seconds; fix or unset it"
        ) from None
    if value <= 0:
        raise InputError(f"FCNKIT_DIST_TIMEOUT={value} must be positive; fix or unset it")
    return value


def init_distributed(device: str | torch.device = "cpu") -> DistInfo:
    """Join the process group torchrun prepared, if any.

    Args:
        device: the training device; picks the backend (gloo on CPU, nccl on CUDA) and, on
            CUDA, the process's GPU (``cuda:LOCAL_RANK``).

    Returns:
        A :class:`DistInfo`; ``distributed=False`` when the process runs alone.

    Raises:
        InputError: the rendezvous does not form within the timeout (one-line message
            naming the address to check, never a hang), or a torchrun variable is not an
            integer in its range (:func:`check_env`).
    """
    check_env()
    if not launched_by_torchrun() or env_world_size() <= 1:
        return DistInfo()
    rank = env_int("RANK", 0)
    world = env_world_size()
    local_rank = env_int("LOCAL_RANK", 0)
    backend = backend_for(device)
    if dist.is_initialized():
        return DistInfo(rank, world, local_rank, True, dist.get_backend())
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    timeout = datetime.timedelta(seconds=timeout_seconds())
    try:
        dist.init_process_group(backend=backend, timeout=timeout)
    except Exception as exc:  # the store raises several types on a failed rendezvous
        raise InputError(
            f"rank {rank}/{world}: the process group ({backend}) could not form within "
            f"{timeout.total_seconds():.0f} s ({first_line(exc)}); "
            "check MASTER_ADDR/MASTER_PORT or the torchrun --rdzv-endpoint and that every "
            "node started"
        ) from exc
    return DistInfo(rank, world, local_rank, True, backend)


def is_initialized() -> bool:
    """True when this process is in a ``torch.distributed`` process group."""
    return dist.is_available() and dist.is_initialized()


def cleanup_distributed() -> None:
    """Leave the process group (no-op when none was initialised)."""
    if is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    if is_initialized():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place and return it (identity when not distributed)."""
    if is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(obj: object, src: int = 0) -> object:
    """Send a picklable object from rank ``src`` to every rank (identity when alone)."""
    if not is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def broadcast_buffers(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s buffers of ``module`` (BatchNorm running statistics) to every
    rank, in place (nothing when alone). DDP broadcasts them only at the start of a
    forward in training mode; between, each rank updates its own copy on its own batch."""
    if not is_initialized():
        return
    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=src)


class ShardedEvalSampler(Sampler[int]):
    """Evaluation shard of rank ``r`` of ``w``: indices ``r, r + w, r + 2w, ...``.

    Unlike ``DistributedSampler`` it neither pads nor drops: the shards partition the
    dataset exactly (sizes differ by at most one), so summing per-rank confusion matrices
    counts every image once — the metrics equal a single-process evaluation.
    """

    def __init__(self, dataset_len: int, *, rank: int = 0, world_size: int = 1) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        self.dataset_len = int(dataset_len)
        self.rank = rank
        self.world_size = world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.dataset_len, self.world_size))

    def __len__(self) -> int:
        # ceil((n - r) / w) for r < n, else 0
        return max(0, math.ceil((self.dataset_len - self.rank) / self.world_size))


def wrap_model(
    model: nn.Module, info: DistInfo, device: str | torch.device, *, sync_bn: bool = False
) -> nn.Module:
    """Move ``model`` to ``device`` and, when distributed, wrap it in DDP.

    Args:
        sync_bn: convert BatchNorm layers to SyncBatchNorm so batch statistics are computed
            over the effective (all-rank) batch. Only meaningful when distributed.
    """
    model = model.to(device)
    if not info.distributed:
        return model
    if sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [info.local_rank] if torch.device(device).type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare model inside a DDP wrapper (its state_dict has no ``module.`` prefix)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def launch_single_node(nproc: int, module_args: Sequence[str]) -> int:
    """Run ``python -m <module_args>`` as ``nproc`` processes on this node via torchrun's API.

    This is what ``torchrun --standalone --nproc-per-node N -m ...`` does: a c10d rendezvous
    on a free localhost port, no restarts (a failing rank fails the job, the others are
    stopped), each worker with RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT.

    Args:
        nproc: processes to start (>= 1).
        module_args: e.g. ``["fcnkit", "train", "--data", "..."]``.

    Returns:
        0 on success, else the exit code of the first failed rank.
    """
    if nproc < 1:
        raise InputError(f"nproc={nproc}: the number of processes must be at least 1")
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=f"fcnkit-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",  # port 0: the store picks a free port (torchrun --standalone)
        rdzv_timeout=timeout_seconds(),
        max_restarts=0,
        monitor_interval=0.2,
        start_method="spawn",
    )
    try:
        elastic_launch(config, entrypoint=sys.executable)("-u", "-m", *module_args)
    except ChildFailedError as exc:
        codes = [f.exitcode for f in exc.failures.values()]
        ranks = sorted(exc.failures)
        logger.error("rank(s) %s of %d failed (exit code %s); see the messages above",
                     ", ".join(map(str, ranks)), nproc, codes[0])
        return failed_exit_code(codes[0] if codes else None)
    return 0


def failed_exit_code(code: int | None) -> int:
    """The launcher's exit code for a rank that ended with ``code``: its own when positive,
    128 + N for one killed by signal N (multiprocessing reports -N; a shell says 137 for
    ``kill -9``), else 1."""
    if code is None or code == 0:
        return 1
    return int(code) if code > 0 else 128 - int(code)
