"""The safety-vs-capability plot stays readable when methods coincide (issue 14 item 9)."""

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
