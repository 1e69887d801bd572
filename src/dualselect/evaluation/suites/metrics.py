"""The comparison's metrics read from the harness results of a suite set: the real suites'
headline columns (:func:`headline_metrics`) and a ``benchmarks:`` list's columns
(:class:`BenchmarkMetrics`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from dualselect.evaluation.suites.tables import REAL_SUITES, SuiteSpec


def headline_metrics(
    m: dict,
    judges: tuple[str, ...] | list[str] = ("keyword",),
    suites: tuple[SuiteSpec, ...] = REAL_SUITES,
) -> dict[str, float]:
    """The comparison's columns from one method's harness metrics: refusal per harmful suite and
    the mean over the suites that count in it (``harmful_refusal``), over-refusal on the
    over-refusal suites (``over_refusal_rate``: XSTest safe in the test sets; their mean when a set
    has several), strict and flexible exact match on the capability suite(s) (``task_exact_match``,
    ``task_exact_match_flexible``: the mean when several), so a validation set's headline columns
    carry the test set's names; with a harmful suite reported apart (``in_harmful_mean`` False:
    XSTest's unsafe prompts in the study set) also its refusal (``unsafe_refusal``, the mean over
    such suites) and ``discrimination`` = unsafe refusal minus over-refusal.

    The first judge gives the plain names; every further judge that labelled the suites adds the
    same safety columns suffixed with ``.<judge>`` (e.g. ``harmful_refusal.xstest_strmatch``), so a
    conclusion that changes with the judge shows in the table."""
    in_mean = [s.name for s in suites if s.kind == "harmful" and s.in_harmful_mean]
    apart = [s.name for s in suites if s.kind == "harmful" and not s.in_harmful_mean]
    over = [s.name for s in suites if s.kind == "over_refusal"]
    cap = [s.name for s in suites if s.kind == "capability"]
    out: dict[str, float] = {}
    for i, judge in enumerate(judges):
        tag = "" if i == 0 else f".{judge}"
        for names, mean_key in ((in_mean, "harmful_refusal"), (apart, "unsafe_refusal")):
            vals = []
            for s in names:
                v = m.get(f"refusal_rate.{s}.{judge}")
                if v is not None:
                    out[f"refusal_{s}{tag}"] = v
                    vals.append(v)
            # the realbase set's mean is over the suites the judge labelled; a suite apart needs all
            if vals and (mean_key == "harmful_refusal" or len(vals) == len(names)):
                out[f"{mean_key}{tag}"] = sum(vals) / len(vals)
        over_vals = [m.get(f"refusal_rate.{s}.{judge}") for s in over]
        if over_vals and None not in over_vals:
            out[f"over_refusal_rate{tag}"] = sum(over_vals) / len(over_vals)
            if f"unsafe_refusal{tag}" in out:
                out[f"discrimination{tag}"] = out[f"unsafe_refusal{tag}"] - out[f"over_refusal_rate{tag}"]
    strict = [m.get(f"exact_match_strict.{s}") for s in cap]
    if strict and None not in strict:
        out["task_exact_match"] = sum(strict) / len(strict)
        out["task_exact_match_flexible"] = sum(m[f"exact_match_flexible.{s}"] for s in cap) / len(cap)
    return out


def _detects_refusal(judge: str) -> bool:
    """Whether the registered judge ``judge`` is a refusal detector (its harm label only means
    "did not refuse"); unknown names count as harm judges."""
    from dualselect.evaluation.judges import JUDGES

    cls = JUDGES.get(judge)
    return cls is not None and getattr(cls, "measures", "harm") == "refusal"


@dataclass
class BenchmarkMetrics:
    """The comparison's columns on a benchmark set, from one run's harness metrics.

    Per judge ``j`` (suffix ``.j``) and, without suffix, for the headline judge (the first in
    ``judges:``): ``refusal_<suite>`` per harmful suite and their mean ``harmful_refusal``;
    ``harmless_<suite>`` / ``harmless_rate`` (1 - the judge's harmful rate, for judges that label
    harm: higher is safer, like refusal); ``over_refusal_<suite>`` per over-refusal suite and
    their mean ``over_refusal_rate``. Capability: ``exact_match_<suite>`` (strict, lm-eval's
    ``#### N``) and ``exact_match_flexible_<suite>``, or ``accuracy_<suite>`` for classification
    sets, and ``capability``, the mean over capability suites of the strict / accuracy score."""

    kinds: dict[str, str]
    judges: list[str] = field(default_factory=list)

    def names(self) -> list[str]:
        """Every metric name a run can have (for validating safety_metric / capability_metric
        before training), headline ones first."""
        harm = [s for s, k in self.kinds.items() if k == "harmful"]
        over = [s for s, k in self.kinds.items() if k == "over_refusal"]
        cap = [s for s, k in self.kinds.items() if k == "capability"]

        def per_judge(j: str) -> list[str]:
            # a refusal detector's "harmful" is only "did not refuse": no harmless columns
            prefixes = ("refusal",) if _detects_refusal(j) else ("refusal", "harmless")
            out = []
            if harm:
                out += ["harmful_refusal"] + ([] if _detects_refusal(j) else ["harmless_rate"])
                out += [f"{p}_{s}" for s in harm for p in prefixes]
            if over:
                out += ["over_refusal_rate"] + [f"over_refusal_{s}" for s in over]
            return out

        first = per_judge(self.judges[0]) if self.judges else per_judge("")
        names = list(first) + [f"{n}.{j}" for j in self.judges for n in per_judge(j)]
        if cap:
            names += ["capability"]
            names += [f"{p}_{s}" for s in cap for p in ("exact_match", "exact_match_flexible", "accuracy")]
        names += ["incoherence_rate"] + [f"safety_avg_{j}" for j in self.judges]
        return names

    def compute(self, m: dict) -> dict[str, float]:
        """The metrics of one run from its harness metrics ``m`` (judges that gave no value for a
        suite leave its keys out; a mean needs every suite)."""
        out: dict[str, float] = {}
        harm = [s for s, k in self.kinds.items() if k == "harmful"]
        over = [s for s, k in self.kinds.items() if k == "over_refusal"]
        for i, j in enumerate(self.judges):
            row: dict[str, float] = {}
            for prefix, mean_key, key, flip, suites in (
                ("refusal", "harmful_refusal", "refusal_rate", False, harm),
                ("harmless", "harmless_rate", "harmful_rate", True, harm),
                ("over_refusal", "over_refusal_rate", "refusal_rate", False, over),
            ):
                vals = []
                for s in suites:
                    v = m.get(f"{key}.{s}.{j}")
                    if v is not None:
                        row[f"{prefix}_{s}"] = 1.0 - v if flip else v
                        vals.append(row[f"{prefix}_{s}"])
                if vals and len(vals) == len(suites):
                    row[mean_key] = sum(vals) / len(vals)
            out.update({f"{k}.{j}": v for k, v in row.items()})
            if i == 0:  # the headline judge
                out.update(row)
        scores = []
        for s, k in self.kinds.items():
            if k != "capability":
                continue
            if m.get(f"label_accuracy.{s}") is not None:
                out[f"accuracy_{s}"] = m[f"label_accuracy.{s}"]
                scores.append(out[f"accuracy_{s}"])
            elif m.get(f"exact_match_strict.{s}") is not None:
                out[f"exact_match_{s}"] = m[f"exact_match_strict.{s}"]
                out[f"exact_match_flexible_{s}"] = m[f"exact_match_flexible.{s}"]
                scores.append(out[f"exact_match_{s}"])
        if scores:
            out["capability"] = sum(scores) / len(scores)
        if m.get("incoherence_rate") is not None:
            out["incoherence_rate"] = m["incoherence_rate"]
        return out

    def columns(self) -> list[tuple[str, str, int]]:
        """Table columns (key, label, scale) for the headline judge: capability first, then
        safety per suite and their means, over-refusal, incoherence."""
        cols: list[tuple[str, str, int]] = []
        cap = [s for s, k in self.kinds.items() if k == "capability"]
        for s in cap:
            cols += [(f"exact_match_{s}", f"{s} EM", 100), (f"accuracy_{s}", f"{s} acc", 100)]
        if len(cap) > 1:
            cols.append(("capability", "capability avg", 100))
        harm = [s for s, k in self.kinds.items() if k == "harmful"]
        cols += [(f"refusal_{s}", f"refusal {s}", 100) for s in harm]
        if len(harm) > 1:
            cols.append(("harmful_refusal", "refusal avg", 100))
        if self.judges and not _detects_refusal(self.judges[0]):  # refusal detectors: no harm column
            cols.append(("harmless_rate", "harmless", 100))
        over = [s for s, k in self.kinds.items() if k == "over_refusal"]
        cols += [(f"over_refusal_{s}", f"over-refusal {s}", 100) for s in over]
        cols.append(("incoherence_rate", "incoherent", 100))
        cols += [(f"safety_avg_{j}", f"Safety Avg ({j})", 1) for j in self.judges]
        return cols
