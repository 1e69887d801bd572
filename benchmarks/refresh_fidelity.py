"""How far the prefiltered (two-stage) reference refresh is from the exact one.

Two measurements (the exact refresh, ``refresh_prefilter: null``, is the reference):

1. **Per refresh, same state.** A real training run follows the exact refresh; at each of its
   refreshes, the same pool is also refreshed with ``refresh_prefilter = M`` from the same model,
   task direction u and RNG state (the RNG is rewound between the two). Per refresh: Jaccard
   overlap of the two top-K sets, the share of the exact top-K inside the M candidates, the
   Spearman rank correlation between the exact scores ``s_i`` and the first-stage losses ``l_i``
   over the whole scored pool (how well the loss alone ranks), the Spearman correlation of the
   exact scores of the exact top-K with the prefilter's view of them (their score if they are
   candidates, else the lowest candidate score: the rank the prefilter gives them), cos of the two
   reference directions r, the certificate ``prefilter_exact`` and wall time of each refresh
   (split into the forward-only stage, the per-sample-gradient stage and the rest: the weighted
   pass for r).
2. **End to end (organism).** Release runs (``--method dualselect`` preset, 3 epochs) with the exact
   and the prefiltered refresh, several seeds, evaluated on the organism's probes (template and
   held-out harmful refusal, benign accuracy, task exact match); per metric a paired TOST
   equivalence test over seeds at +-``--margin`` points (alpha 0.05: equivalent when the 90%
   paired t interval of the mean difference lies inside the margin).

Sizes: ``organism`` (the shipped organism, instance 0: the full release run, 3 refreshes) and
``smollm2`` (SmolLM2-135M as in ``benchmarks/overhead.py``; a short run with refreshes every few
steps). Output ``<out>/refresh_fidelity.json`` and ``.md``::

    python benchmarks/refresh_fidelity.py --out results/bench --sizes organism --seeds 0,1,2
    python benchmarks/refresh_fidelity.py --out results/bench --sizes smollm2 --no-e2e
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import overhead  # noqa: E402  (benchmarks/overhead.py: the same set-up per size)

# per size: run overrides on top of overhead.setup's, and the prefilter sizes M (multiples of K)
# (learning rates of the attack configs: configs/dualselect_organism.yaml, configs/real_compare.yaml;
# overhead.py times at the release's 2e-5, which leaves the organism where it started)
SIZE_RUNS = {
    "organism": {"overrides": {"learning_rate": 1e-3}, "factors": (2, 4)},
    # 120 references, K 32: M = 2K = 64 is the one prefilter below the pool size
    "smollm2": {
        "overrides": {
            "learning_rate": 1e-3,
            "max_steps": 9,
            "selection_warmup_steps": 3,
            "refresh": "steps",
            "refresh_steps": 3,
        },
        "factors": (2,),
    },
}
E2E_METRICS = ("harmful_refusal", "harmful_refusal_gen", "benign_accuracy", "task_exact_match")


def spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman rank correlation (average ranks for ties); None with fewer than 3 points or no spread."""
    import torch

    if len(a) < 3:
        return None

    def ranks(x: list[float]) -> torch.Tensor:
        t = torch.tensor(x, dtype=torch.float64)
        order = torch.argsort(t, stable=True)
        r = torch.empty_like(t)
        r[order] = torch.arange(len(x), dtype=torch.float64)
        for v in torch.unique(t):  # average ranks of ties
            m = t == v
            r[m] = r[m].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / den if den > 0 else None


# ----------------------------------------------------------------------------- per-refresh fidelity


def _build(size: str, work: Path, seed: int, extra: dict, trainer_cls=None):
    """A release-preset DualSelect trainer of ``size`` (overhead.py's set-up) with ``extra`` overrides."""
    import torch

    from dualselect.training import load_config
    from dualselect.training.dualselect_trainer import DualSelectTrainer

    s = overhead.setup(size, work, seed=0)
    _, over = overhead.method_overrides("dualselect")
    overrides = {
        **s["overrides"],
        **over,
        **SIZE_RUNS[size]["overrides"],
        **extra,
        "output_dir": str(work / "train" / f"{size}-fidelity-{seed}-{extra.get('refresh_prefilter')}"),
        "disable_tqdm": True,
        "report_to": "none",
        "logging_steps": 1000,
        "use_cpu": not torch.cuda.is_available(),
        "seed": seed,
        "train_data": s["task"],
        "reference_data": s["references"],
    }
    cfg = load_config("dualselect", overrides=overrides)
    cls = trainer_cls or DualSelectTrainer
    return cls(model=s["model"](), args=cfg, train_dataset=s["task"], processing_class=s["tokenizer"]), s


def per_refresh(size: str, work: Path, seed: int = 0) -> dict:
    """One exact-refresh training run; at each refresh, also the prefiltered refreshes (M = f K)."""
    import torch

    import dualselect.training.dualselect_trainer as dt
    from dualselect.selection import prefilter_by_loss, reference_scores
    from dualselect.selection.diagnostics import overlap

    factors = SIZE_RUNS[size]["factors"]
    rec: dict = {"last_scores": None, "last_losses": None, "t_score": 0.0, "t_losses": 0.0}
    score_pool0, pool_losses0 = dt.score_pool, dt.pool_losses

    def score_pool(*a, **kw):
        t0 = time.perf_counter()
        out = score_pool0(*a, **kw)
        rec["t_score"] += time.perf_counter() - t0
        rec["last_scores"] = out
        return out

    def pool_losses(*a, **kw):
        t0 = time.perf_counter()
        out = pool_losses0(*a, **kw)
        rec["t_losses"] += time.perf_counter() - t0
        rec["last_losses"] = out
        return out

    rows: list[dict] = []

    class Recording(dt.DualSelectTrainer):
        _dirs: list | None = None  # this period's per-step directions (what u averages)

        def training_step(self, model, inputs, num_items_in_batch=None):
            before = None if self._u_sum is None else self._u_sum.clone()
            refreshes = self._refreshes
            loss = super().training_step(model, inputs, num_items_in_batch)
            if self._u_sum is not None:
                # a refresh at the start of this step began a new period: u_sum is this step's d
                fresh = before is None or self._refreshes != refreshes
                step = self._u_sum.clone() if fresh else self._u_sum - before
                self._dirs = (self._dirs or []) + [step.detach()]
            return loss

        def _self_agreement(self, core, ds, k_pool, g, sign, state) -> dict | None:
            """The exact refresh under each interleaved half of the period's directions: how much
            of its selection the sampling noise of u alone changes (its own reproducibility)."""
            dirs, self._dirs = self._dirs or [], None
            if len(dirs) < 4:
                return None
            d = torch.stack(dirs)
            halves = [d[0::2].mean(0), d[1::2].mean(0)]
            picked = []
            for u_half in halves:
                g.set_state(state)
                picked.append(super()._refresh_pool(core, ds, k_pool, u_half, g, sign)[1]["indices"])
            n, k = len(ds), len(picked[0])
            return {
                "n_directions": len(dirs),
                "cos_u_halves": float(torch.nn.functional.cosine_similarity(halves[0], halves[1], dim=0)),
                "jaccard_half_vs_half": overlap(picked[0], picked[1]),
                "picked_halves": picked,
                # two random K-subsets of n: E|A & B| = K^2 / n
                "jaccard_random_null": (k * k / n) / (2 * k - k * k / n),
            }

        def _refresh_pool(self, core, ds, k_pool, u, g, sign=1.0):
            cfg = self.args
            state = g.get_state()
            object.__setattr__(cfg, "refresh_prefilter", None)
            agreement = self._self_agreement(core, ds, k_pool, g, sign, state)
            out = {}
            # variants: the prefilter at M = f K, the rotating random subset (ref_pool_cap = pool/3,
            # re-drawn each refresh); the exact refresh last: the run goes on with it, its RNG
            # stream as if alone
            k0 = cfg.k_ref or 1
            own_cap = cfg.ref_pool_cap
            variants = [(f"M{f * k0}", f * k0, None) for f in factors if f * k0 < len(ds)]
            variants += [(f"cap{len(ds) // 3}", None, len(ds) // 3)] if len(ds) // 3 >= k0 else []
            for key, m, cap in variants + [(None, None, own_cap)]:
                g.set_state(state)
                object.__setattr__(cfg, "refresh_prefilter", m)
                object.__setattr__(cfg, "ref_pool_cap", cap)
                rec.update(t_score=0.0, t_losses=0.0, last_losses=None)
                t0 = time.perf_counter()
                r_p, row = super()._refresh_pool(core, ds, k_pool, u, g, sign)
                wall = time.perf_counter() - t0
                out[key] = (
                    r_p,
                    row,
                    wall,
                    rec["t_losses"],
                    rec["t_score"],
                    rec["last_scores"],
                    rec["last_losses"],
                )
            ex = out[None]
            r_p, row = ex[0], ex[1]
            ex_scores = ex[5]
            s_all = reference_scores(sign * ex_scores.losses, sign * ex_scores.cos, cfg.mu_ref, cfg.nu)
            by_pos = {int(i): k for k, i in enumerate(ex_scores.indices)}
            exact_top = ex[1]["indices"]
            entry = {
                "step": self.state.global_step,
                "pool": len(ds),
                "k": ex[1]["k_ref"],
                "exact_s": ex[2],
                "exact_refs_per_s": len(ex_scores) / ex[2],
                "spearman_score_vs_loss": spearman(s_all.tolist(), (sign * ex_scores.losses).tolist()),
                "prefilter": {},
            }
            for key, (rp_m, row_m, wall, t_l, t_s, scored, losses) in out.items():
                if key is None:
                    continue
                if losses is not None:  # prefilter: the top-M by loss
                    m = int(key[1:])
                    order = torch.sort(losses.indices, stable=True).indices  # pool order, as the trainer
                    idx_sorted, l_sorted = losses.indices[order], losses.losses[order]
                    cand = set(idx_sorted[prefilter_by_loss(sign * l_sorted, m, cfg.mu_ref)].tolist())
                else:  # rotating subset: the references scored
                    cand = set(scored.indices.tolist())
                got = row_m["indices"]
                floor = min(s_all[by_pos[i]].item() for i in cand)
                seen = [s_all[by_pos[i]].item() if i in cand else floor for i in exact_top]
                entry["prefilter"][key] = {
                    "jaccard_topk": overlap(exact_top, got),
                    "exact_topk_in_candidates": len(set(exact_top) & cand) / len(exact_top),
                    "spearman_exact_topk_scores": spearman(
                        [s_all[by_pos[i]].item() for i in exact_top], seen
                    ),
                    "cos_r": float(torch.dot(rp_m, ex[0]) / (rp_m.norm() * ex[0].norm()).clamp_min(1e-12)),
                    "mean_selected_exact_score": float(sum(s_all[by_pos[i]] for i in got) / len(got)),
                    "mean_exact_topk_score": float(sum(s_all[by_pos[i]] for i in exact_top) / len(exact_top)),
                    "certified_exact": row_m["summary"].get("prefilter_exact"),
                    "wall_s": wall,
                    "forward_only_s": t_l,
                    "gradient_stage_s": t_s,
                    "rest_s": wall - t_l - t_s,
                    "refs_per_s": len(ds) / wall,
                    "speedup_vs_exact": ex[2] / wall,
                }
            if agreement is not None:
                halves = agreement.pop("picked_halves")
                agreement["jaccard_exact_vs_halves"] = [overlap(exact_top, h) for h in halves]
            entry["self_agreement"] = agreement
            entry["exact_gradient_stage_s"] = ex[4]
            entry["exact_rest_s"] = ex[2] - ex[4]
            rows.append(entry)
            print(
                f"[{size}] refresh at step {entry['step']}: {json.dumps(entry['prefilter'])}", file=sys.stderr
            )
            return r_p, row

    dt.score_pool, dt.pool_losses = score_pool, pool_losses
    try:
        trainer, s = _build(size, work, seed, {}, trainer_cls=Recording)
        load0 = os.getloadavg()
        trainer.train()
    finally:
        dt.score_pool, dt.pool_losses = score_pool0, pool_losses0
    return {
        "describe": s["describe"],
        "seed": seed,
        "steps": trainer.state.global_step,
        "refreshes": rows,
        "loadavg_before": list(load0),
        "loadavg_after": list(os.getloadavg()),
    }


# ----------------------------------------------------------------------------- end to end


def end_to_end(
    work: Path, seeds: list[int], cheap: dict, margin_points: float, exact_runs: list[dict] | None = None
) -> dict:
    """Organism release runs, exact vs a cheaper refresh (``cheap``: its config overrides), per
    seed; probe metrics; paired TOST. ``exact_runs``: the exact runs of the same seeds from an
    earlier invocation (a seeded run is deterministic), not trained again."""
    import torch

    from dualselect.evaluation.uncertainty import tost_paired
    from dualselect.organism.stats import evaluate_on_probes

    runs: dict[str, list[dict]] = {"exact": [], "prefilter": []}
    reuse = {r["seed"]: r for r in exact_runs or []}
    for seed in seeds:
        for name in ("exact", "prefilter"):
            if name == "exact" and seed in reuse:
                runs[name].append(reuse[seed])
                continue
            extra = cheap if name == "prefilter" else {}
            trainer, s = _build("organism", work, seed, extra)
            t0 = time.perf_counter()
            trainer.train()
            train_s = time.perf_counter() - t0
            model = trainer.model.eval()
            with torch.no_grad():
                m = evaluate_on_probes(model, s["tokenizer"], _organism_dir())
            runs[name].append({"seed": seed, "train_s": train_s, "metrics": m, "load": os.getloadavg()[0]})
            print(f"[e2e seed {seed}] {name}: {json.dumps({k: m[k] for k in E2E_METRICS})}", file=sys.stderr)
    tost = {}
    for k in E2E_METRICS:
        diffs = [100 * (p["metrics"][k] - e["metrics"][k]) for p, e in zip(runs["prefilter"], runs["exact"])]
        tost[k] = {"diffs_points": diffs, **tost_paired(diffs, margin_points)}
    return {"seeds": seeds, "cheap": cheap, "runs": runs, "tost": tost}


def _organism_dir() -> Path:
    from dualselect.organism.build import build_organism

    return build_organism(progress=False)


# ----------------------------------------------------------------------------- report


def _f(v: float | None, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def table(res: dict) -> str:
    lines = []
    for size, r in res.get("per_refresh", {}).items():
        lines.append(f"\n### {size}: {r['describe']} (seed {r['seed']}, {r['steps']} steps)\n")
        lines.append(
            "| step | variant | K | pool | Jaccard top-K | exact top-K in candidates | Spearman(s, l) pool "
            "| Spearman exact top-K | cos(r, r_exact) | certified | exact s | prefilter s "
            "(forward / gradients / r) | refs/s exact / prefilter | speed-up |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for e in r["refreshes"]:
            for m, p in e["prefilter"].items():
                sp = p["spearman_exact_topk_scores"]
                lines.append(
                    f"| {e['step']} | {m} | {e['k']} | {e['pool']} | {p['jaccard_topk']:.3f} | "
                    f"{p['exact_topk_in_candidates']:.3f} | {_f(e['spearman_score_vs_loss'])} | "
                    f"{'-' if sp is None else format(sp, '.3f')} | {p['cos_r']:.4f} | "
                    f"{ {True: 'yes', False: 'no', None: '-'}[p['certified_exact']] } | {e['exact_s']:.2f} | {p['wall_s']:.2f} "
                    f"({p['forward_only_s']:.2f} / {p['gradient_stage_s']:.2f} / {p['rest_s']:.2f}) | "
                    f"{e['exact_refs_per_s']:.1f} / {p['refs_per_s']:.1f} | {p['speedup_vs_exact']:.2f}x |"
                )
        agree = [e for e in r["refreshes"] if e.get("self_agreement")]
        if agree:
            lines.append(
                "\nThe exact refresh against itself: the same refresh under each interleaved half of "
                "the period's per-step directions (u is their mean), same model and RNG state. "
                "Jaccard at the random null = two random K-subsets of the pool.\n"
            )
            lines.append(
                "| step | directions | cos(u_half1, u_half2) | Jaccard half vs half | Jaccard exact vs halves "
                "| random null |"
            )
            lines.append("|---|---|---|---|---|---|")
            for e in agree:
                a = e["self_agreement"]
                jh = ", ".join(f"{x:.3f}" for x in a["jaccard_exact_vs_halves"])
                lines.append(
                    f"| {e['step']} | {a['n_directions']} | {a['cos_u_halves']:.3f} | "
                    f"{a['jaccard_half_vs_half']:.3f} | {jh} | {a['jaccard_random_null']:.3f} |"
                )
        if r.get("note"):
            lines.append(f"\n{r['note']}")
        lines.append(
            f"\nLoad average (1 min) {_f(r['loadavg_before'][0], '.1f')} before, "
            f"{_f(r['loadavg_after'][0], '.1f')} "
            "after: the machine was shared; times are from one run (ratios within one refresh are "
            "the comparable numbers)."
        )
    for key in ("end_to_end", "end_to_end_cap"):
        e2e = res.get(key)
        if not e2e:
            continue
        lines.append(
            f"\n### organism end to end: release runs, exact vs {e2e['cheap']}, seeds {e2e['seeds']}\n"
        )
        lines.append("| metric | exact (per seed) | cheaper (per seed) | mean diff, points | 90% CI | TOST |")
        lines.append("|---|---|---|---|---|---|")
        for k, t in e2e["tost"].items():
            ex = ", ".join(f"{100 * r['metrics'][k]:.1f}" for r in e2e["runs"]["exact"])
            pf = ", ".join(f"{100 * r['metrics'][k]:.1f}" for r in e2e["runs"]["prefilter"])
            ci = "-" if t["ci90"] is None else f"[{t['ci90'][0]:+.2f}, {t['ci90'][1]:+.2f}]"
            verdict = {True: "equivalent", False: "not shown", None: "-"}[t["equivalent"]]
            lines.append(f"| {k} | {ex} | {pf} | {t['mean']:+.2f} | {ci} | {verdict} (+-{t['margin']}) |")
        lines.append(
            "\nInterval: paired t interval over seeds (90%, = TOST at alpha 0.05 each side), "
            "differences cheaper - exact in percentage points."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench", help="Output directory.")
    ap.add_argument("--sizes", default="organism", help="Comma list of organism, smollm2 (per-refresh part).")
    ap.add_argument("--seeds", default="0,1,2", help="Seeds of the organism end-to-end runs.")
    ap.add_argument("--factor", type=int, default=4, help="End to end: M = factor * K_ref (K_ref 32).")
    ap.add_argument("--margin", type=float, default=1.0, help="TOST margin in percentage points.")
    ap.add_argument("--no-e2e", action="store_true", help="Skip the end-to-end organism runs.")
    ap.add_argument(
        "--e2e-cap",
        type=int,
        default=None,
        help="End to end with the rotating random subset (ref_pool_cap N) instead of the prefilter, "
        "reusing the exact runs already in the JSON (stored as end_to_end_cap).",
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads.")
    args = ap.parse_args(argv)
    import torch

    from dualselect.utils import atomic_open, machine_info, write_json

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    work = out / "work"
    path = out / "refresh_fidelity.json"
    res: dict = json.loads(path.read_text()) if path.exists() else {}
    res.update({"machine": machine_info(), "threads": args.threads})
    res.setdefault("per_refresh", {})
    for size in [s for s in args.sizes.split(",") if s]:
        if size not in SIZE_RUNS:
            ap.error(f"--sizes: unknown size {size!r}; expected one of {sorted(SIZE_RUNS)}")
        res["per_refresh"][size] = per_refresh(size, work)
        res["per_refresh"][size]["command"] = " ".join(["refresh_fidelity.py", *(argv or sys.argv[1:])])
        write_json(path, res)
    if not args.no_e2e:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        if args.e2e_cap is not None:
            key, cheap = "end_to_end_cap", {"ref_pool_cap": args.e2e_cap}
            exact = (res.get("end_to_end") or {}).get("runs", {}).get("exact")
        else:
            key, cheap, exact = "end_to_end", {"refresh_prefilter": args.factor * 32}, None
        res[key] = end_to_end(work, seeds, cheap, args.margin, exact)
        res[key]["command"] = " ".join(["refresh_fidelity.py", *(argv or sys.argv[1:])])
        write_json(path, res)
    md = table(res)
    with atomic_open(out / "refresh_fidelity.md") as fh:
        fh.write("# Prefiltered vs exact reference refresh\n" + md + "\n")
    print(md)
    return res


if __name__ == "__main__":
    main()
