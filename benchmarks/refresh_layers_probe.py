"""Would a truncated backward keep the reference ranking? A probe, not a refresh option.

A cheaper refresh could compute each reference's conflict ``c_i = -cos(g_i, u)`` from the LoRA
parameters of the last k decoder layers only (the backward stops there). This probe measures, at
every refresh of a release run (the exact refresh drives the run), how the score computed from
the last k layers' coordinates of ``g_i`` and ``u`` compares with the exact score over the whole
pool: Pearson correlation of the two cosines, Jaccard of the two top-K sets, and the Jaccard of a
two-stage variant (top-M by the truncated score, then the exact score on those M). Per-sample
gradients are materialised for the whole pool (fine for the organism's 336 references; not a
production path). Output: ``<out>/refresh_layers_probe.json``::

    python benchmarks/refresh_layers_probe.py --out results/bench --size organism
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import refresh_fidelity as rf  # noqa: E402  (the same release-run set-up per size)


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--size", default="organism", choices=sorted(rf.SIZE_RUNS))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    import torch

    import dualselect.training.dualselect_trainer as dt
    from dualselect.gradients.flat import named_trainable_parameters
    from dualselect.selection import reference_scores
    from dualselect.selection.diagnostics import overlap
    from dualselect.utils import machine_info, write_json

    torch.set_num_threads(1)
    rows: list[dict] = []

    class Probe(dt.DualSelectTrainer):
        def _refresh_pool(self, core, ds, k_pool, u, g, sign=1.0):
            cfg = self.args
            named = named_trainable_parameters(core)
            layer = [int(re.search(r"layers\.(\d+)\.", n).group(1)) for n, _ in named]
            coord_layer = torch.cat([torch.full((p.numel(),), li) for (_, p), li in zip(named, layer)])
            n_layers = max(layer) + 1
            state = g.get_state()
            grads, losses, idx = [], [], []
            for batch in self._pool_batches(list(range(len(ds))), g, ds, shuffle=False):
                with self.compute_loss_context_manager():
                    cap = self.engine.capture(core, batch)
                grads.append(cap.per_sample_flat().detach().float())
                losses.append(sign * cap.losses.detach().float())
                idx.append(batch["index"])
                cap.release()
            g.set_state(state)  # the run's own refresh below sees the RNG as if alone
            G, losses, idx = torch.cat(grads), torch.cat(losses), torch.cat(idx)
            k = cfg.k_ref

            def scored(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                gm, um = G[:, mask], sign * u[mask].float()
                cos = (gm @ um) / (gm.norm(dim=1) * um.norm()).clamp_min(1e-12)
                return reference_scores(losses, cos, cfg.mu_ref, cfg.nu), cos

            s_full, cos_full = scored(torch.ones_like(coord_layer, dtype=torch.bool))
            exact = sorted(idx[torch.topk(s_full, k).indices].tolist())
            row: dict = {
                "step": self.state.global_step,
                "layers": n_layers,
                "pool": len(ds),
                "k": k,
                "last": {},
            }
            for kk in range(1, n_layers):
                mask = coord_layer >= n_layers - kk
                s, cos = scored(mask)
                res = {
                    "share_of_lora_params": float(mask.float().mean()),
                    "pearson_cos": float(torch.corrcoef(torch.stack([cos_full, cos]))[0, 1]),
                    "jaccard_topk": overlap(exact, sorted(idx[torch.topk(s, k).indices].tolist())),
                }
                for f in (2, 4):
                    cand = torch.topk(s, min(len(s), f * k)).indices
                    two = sorted(idx[cand[torch.topk(s_full[cand], k).indices]].tolist())
                    res[f"jaccard_two_stage_M{f}K"] = overlap(exact, two)
                row["last"][str(kk)] = res
            print(json.dumps(row), file=sys.stderr, flush=True)
            rows.append(row)
            return super()._refresh_pool(core, ds, k_pool, u, g, sign)

    out = Path(args.out)
    trainer, s = rf._build(args.size, out / "work", args.seed, {}, trainer_cls=Probe)
    trainer.train()
    write_json(
        out / "refresh_layers_probe.json",
        {
            "size": args.size,
            "describe": s["describe"],
            "seed": args.seed,
            "refreshes": rows,
            "machine": machine_info(),
        },
    )
    return rows


if __name__ == "__main__":
    main()
