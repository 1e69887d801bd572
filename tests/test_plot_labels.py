"""The safety-vs-capability plot stays readable when methods coincide."""

from __future__ import annotations

from dualselect.evaluation.report import label_offsets, plots


def test_coinciding_points_get_stacked_labels():
    ranks = label_offsets({"sft": (62.0, 40.0), "ds": (62.0, 40.0), "kl": (63.0, 41.0), "base": (30.0, 95.0)})
    assert ranks == {"sft": 0, "ds": 1, "kl": 2, "base": 0}


def test_plot_has_a_legend_and_distinct_label_positions(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    saved = {}

    def keep(fig, path):  # capture the figure instead of writing it
        saved[path.name] = fig

    monkeypatch.setattr("dualselect.evaluation.report.save_figure", keep)
    res = {
        "judges": ["ground_truth"],
        "suites": {"gsm": {"kind": "capability"}, "harm": {"kind": "harmful"}},
        "methods": {
            n: {"exact_match_strict.gsm": c, "refusal_rate.harm.ground_truth": r}
            for n, c, r in [("sft", 0.62, 0.40), ("dualselect", 0.62, 0.40), ("base", 0.3, 0.95)]
        },
    }
    plots(res, tmp_path)
    ax = saved["safety_vs_capability.png"].axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["sft", "dualselect", "base"]
    offsets = {a.get_text(): a.xyann for a in ax.texts}
    assert offsets["sft"] != offsets["dualselect"]  # the two coinciding labels do not overprint
    plt.close("all")


def test_comparison_plot_keeps_coinciding_methods_visible_and_labels_apart(tmp_path, monkeypatch):
    """compare's plot on a table where methods coincide (sft = safeinstr, kl = lisa, four
    DualSelect variants within 0.1 points): every marker at its own place on the canvas, one
    label per cluster naming all its methods, labels inside the axes and never overlapping."""
    import itertools

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dualselect.experiments.table import aggregate, plot_safety_vs_capability

    saved = {}
    monkeypatch.setattr("dualselect.evaluation.report.save_figure", lambda fig, path: saved.update(fig=fig))

    def seeds(cap, safe, d=0.005):
        return [{"cap": cap + e, "safe": safe + e} for e in (-d, 0.0, d)]

    runs = {
        "sft": seeds(0.99, 0.14),
        "dualselect": seeds(0.982, 0.998),
        "dualselect_paper": seeds(0.982, 0.999),
        "ds_paper_eta_0.05": seeds(0.983, 0.999),
        "ds_paper_eta_val": seeds(0.982, 0.999),
        "kl": seeds(0.97, 0.95),
        "safeinstr": seeds(0.99, 0.14),
        "lisa": seeds(0.97, 0.95),
    }
    plot_safety_vs_capability(aggregate(runs, "safe", "cap"), tmp_path / "p.png", "safe", "cap")
    fig = saved["fig"]
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(runs)  # table order
    renderer = fig.canvas.get_renderer()
    centres = {}
    for c in ax.containers:
        line = c.lines[0]
        centres[c.get_label()] = line.get_transform().transform(line.get_xydata())[0]
    assert set(centres) == set(runs)
    for a, b in itertools.combinations(runs, 2):  # no marker hides another (markers ~12 px wide)
        dist = ((centres[a] - centres[b]) ** 2).sum() ** 0.5
        assert dist >= 9, (a, b, dist)
    texts = [t for t in ax.texts if t.get_text()]
    named = [n.strip(" =") for t in texts for n in t.get_text().replace("\n", " ").split(" = ")]
    assert sorted(named) == sorted(runs)  # every method named once
    assert any("sft" in t.get_text() and "safeinstr" in t.get_text() for t in texts)
    boxes = [t.get_window_extent(renderer) for t in texts]
    frame = ax.get_window_extent(renderer)
    for b in boxes:
        assert frame.x0 <= b.x0 and b.x1 <= frame.x1 and frame.y0 <= b.y0 and b.y1 <= frame.y1
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b)
    plt.close("all")
