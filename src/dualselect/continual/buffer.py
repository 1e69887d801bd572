"""A bounded replay buffer filled by reservoir sampling (Vitter's algorithm R), seeded.

The buffer holds *references* to training records of earlier stages (stage, task, index in that
stage's training set), never copies of later data: after stage k it holds only items of stages
<= k, and stage k+1 reads the buffer as it was after stage k. Every record of a stage is offered
once, in a seeded order (the order a data loader would present them); after the n-th offer each
record offered so far is in the buffer with probability min(1, capacity / n), so earlier tasks
keep a share proportional to their size.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class ReservoirBuffer:
    """``capacity`` slots, ``n_seen`` records offered so far, ``items`` the kept (stage, task,
    index) triples. Seeded per stage (``seed``, stage), so a resumed run refills it identically."""

    capacity: int
    seed: int = 0
    n_seen: int = 0
    items: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.capacity < 0:
            raise ValueError(f"buffer capacity={self.capacity}: must be >= 0")

    def add_stage(self, stage: int, task: str, n_records: int) -> None:
        """Offer the ``n_records`` training records of ``stage`` (task ``task``), in a seeded order."""
        if any(it["stage"] >= stage for it in self.items):
            raise ValueError(
                f"stage {stage} offered after a later or the same stage: the buffer is append-only"
            )
        rng = random.Random(f"reservoir-{self.seed}-{stage}")
        order = list(range(n_records))
        rng.shuffle(order)
        for index in order:
            self.n_seen += 1
            item = {"stage": stage, "task": task, "index": index}
            if len(self.items) < self.capacity:
                self.items.append(item)
            else:
                j = rng.randrange(self.n_seen)  # keep with probability capacity / n_seen
                if j < self.capacity:
                    self.items[j] = item

    def by_task(self) -> dict[str, list[dict]]:
        """The kept items grouped by task, in stage order, each group sorted by index."""
        out: dict[str, list[dict]] = {}
        for it in sorted(self.items, key=lambda x: (x["stage"], x["index"])):
            out.setdefault(it["task"], []).append(it)
        return out

    def to_dict(self) -> dict:
        return {
            "capacity": self.capacity,
            "seed": self.seed,
            "n_seen": self.n_seen,
            "items": list(self.items),
        }

    @classmethod
    def from_dict(cls, d: dict) -> ReservoirBuffer:
        return cls(int(d["capacity"]), int(d["seed"]), int(d["n_seen"]), [dict(x) for x in d["items"]])
