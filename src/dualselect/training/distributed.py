"""What DualSelect needs of a distributed run: the setups it refuses and the collectives of a
refresh under DDP (each rank scores its share of the pool; the scores are gathered)."""

from __future__ import annotations

from typing import Any

import torch

from dualselect.gradients import PoolScores


def refuse_distributed(trainer: Any, name: str) -> None:
    """DualSelect writes its own gradient: refuse every multi-device setup it does not reduce."""
    args = trainer.args
    if getattr(trainer, "is_fsdp_enabled", False) or getattr(trainer, "is_deepspeed_enabled", False):
        raise NotImplementedError(
            f"{name}: FSDP and DeepSpeed are not supported (the corrected gradient d + eta r is "
            "computed from per-sample LoRA gradients that these shard); run on one device"
        )
    if args.n_gpu > 1:
        raise NotImplementedError(
            f"{name}: {args.n_gpu} GPUs visible to one process (torch DataParallel) are not supported; "
            "set CUDA_VISIBLE_DEVICES to one device"
        )
    from accelerate.utils import DistributedType

    kind = trainer.accelerator.distributed_type
    if args.world_size > 1 and kind not in (DistributedType.MULTI_CPU, DistributedType.MULTI_GPU):
        raise NotImplementedError(
            f"{name}: distributed type {kind} is not supported; use DDP (torchrun / accelerate "
            "launch with plain multi-GPU or multi-CPU)"
        )


def rank_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_cat(t: torch.Tensor) -> tuple[int, torch.Tensor]:
    """(this rank's offset, the ranks' 1-D tensors concatenated rank-major); one process: (0, t)."""
    import torch.distributed as dist

    rank, world = rank_world()
    if world == 1:
        return 0, t
    parts: list = [None] * world
    dist.all_gather_object(parts, t.detach().cpu())
    offset = sum(int(p.numel()) for p in parts[:rank])
    return offset, torch.cat(parts).to(t.device)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist

    if rank_world()[1] > 1:
        dist.all_reduce(t)
    return t


def gathered_pool_scores(scores: PoolScores) -> PoolScores:
    """Every rank's pool scores, sorted by pool position (one process: just sorted)."""
    fields = [gather_cat(x)[1] for x in (scores.indices, scores.losses, scores.cos, scores.n_tokens)]
    order = torch.sort(fields[0], stable=True).indices
    return PoolScores(*(f[order] for f in fields))
