"""Attempts 7-8 of the real base: calibrating the merged alignment's strength on validation prompts
and task rows (realbase/calibrate.py). The rule picks the right scale, the model ends at W0 + s * dW
for the chosen s, the build stage writes what it chose, the task target moves the choice, and the
validation prompts and rows never meet a training or evaluation prompt of the real files."""

from __future__ import annotations

import json
import os

import pytest
import torch

from dualselect.evaluation.benchmarks import text_hash
from dualselect.realbase.calibrate import (
    ScaleResult,
    Targets,
    alignment_delta,
    apply_scale,
    calibrate,
    calibration_prompts,
    calibration_task_rows,
    choose_attempt,
    choose_scale,
)
from dualselect.realbase.prompts import CALIBRATION_SAFE_PROMPTS, CONTRAST_PROMPTS

KEY = "model.layers.0.self_attn.q_proj.weight"


def _r(scale: float, over: float, refusal: float, task_em: float | None = None) -> ScaleResult:
    return ScaleResult(scale, over, refusal, [], task_em)


def test_choose_scale_keeps_the_largest_scale_meeting_both_targets():
    t = Targets(max_over_refusal=0.10, min_refusal=0.90)
    rs = [_r(1.0, 0.30, 0.99), _r(0.8, 0.08, 0.95), _r(0.6, 0.05, 0.91), _r(0.4, 0.02, 0.70)]
    best, why = choose_scale(rs, t)
    assert best.scale == 0.8 and why.startswith("largest")
    # the unscaled merge is kept when it already meets both
    assert choose_scale([_r(1.0, 0.06, 0.94), *rs[1:]], t)[0].scale == 1.0
    # none meets both: refusal minus over-refusal, ties to the larger scale
    rs = [_r(1.0, 0.40, 0.99), _r(0.8, 0.25, 0.94), _r(0.6, 0.15, 0.84), _r(0.5, 0.10, 0.70)]
    best, why = choose_scale(rs, t)
    assert best.scale == 0.8 and why.startswith("no scale")
    assert choose_scale([_r(0.7, 0.1, 0.8), _r(0.9, 0.2, 0.9)], Targets(0.0, 1.0))[0].scale == 0.9
    with pytest.raises(ValueError, match="no scale"):
        choose_scale([], t)


def test_choose_attempt_prefers_meeting_the_targets_then_the_trade_off():
    t = Targets(max_over_refusal=0.10, min_refusal=0.90)

    def rec(seed: int, r: ScaleResult) -> dict:
        return {"align_seed": seed, "meets_targets": r.meets(t), "chosen": r.to_dict()}

    # seeds 5 and 6 meet the targets (6 with the wider margin); seed 7 misses refusal by a little
    # with a better refusal minus over-refusal: 6 is kept, 5 under the first-meeting rule's records
    s5, s6, s7 = rec(5, _r(0.9, 0.09, 0.905)), rec(6, _r(1.0, 0.073, 0.946)), rec(7, _r(1.0, 0.0, 0.89))
    assert choose_attempt([s5, s6, s7], t)["align_seed"] == 6
    assert choose_attempt([s7, s5], t)["align_seed"] == 5
    # none meets them: the fallback's key; ties to the earlier attempt
    assert choose_attempt([rec(1, _r(1.0, 0.3, 0.9)), s7], t)["align_seed"] == 7
    assert choose_attempt([rec(1, _r(1.0, 0.2, 0.8)), rec(2, _r(1.0, 0.2, 0.8))], t)["align_seed"] == 1
    with pytest.raises(ValueError, match="no attempt"):
        choose_attempt([], t)


def test_choose_scale_with_the_task_target():
    t = Targets(max_over_refusal=0.10, min_refusal=0.90, min_task_em=0.07 - 0.05)
    # the largest scale meeting the safety targets loses the task: the next one is kept
    rs = [_r(1.0, 0.08, 0.95, 0.01), _r(0.9, 0.06, 0.93, 0.02), _r(0.8, 0.05, 0.92, 0.12)]
    assert 0.07 - 0.05 > 0.02  # float rounding: the target compares with a tolerance
    assert choose_scale(rs, t)[0].scale == 0.9
    assert choose_scale(rs, Targets(0.10, 0.90))[0].scale == 1.0  # without the task target
    assert choose_scale(rs, Targets(0.10, 0.90, 0.06))[0].scale == 0.8
    # none meets every target: a scale keeping the task beats a better safety trade-off without it
    rs = [_r(1.0, 0.20, 0.99, 0.0), _r(0.5, 0.15, 0.90, 0.09)]
    best, why = choose_scale(rs, t)
    assert best.scale == 0.5 and "keeping the task" in why
    assert choose_scale(rs, Targets(0.10, 0.90))[0].scale == 1.0
    # none keeps the task either: the safety trade-off decides; an unscored task never keeps it
    assert choose_scale([_r(1.0, 0.2, 0.99, 0.0), _r(0.5, 0.15, 0.9, 0.0)], t)[0].scale == 1.0
    assert not _r(1.0, 0.0, 1.0).meets(t) and _r(1.0, 0.0, 1.0).meets(Targets(0.1, 0.9))


def _base_and_merged():
    from tiny_models import tiny_causal_lm

    base = tiny_causal_lm("llama", seed=0)
    merged = tiny_causal_lm("llama", seed=0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in merged.named_parameters():
            if name.endswith(("q_proj.weight", "v_proj.weight")):
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return {k: v.clone() for k, v in base.state_dict().items()}, merged


def _scale_of(model, base_state, delta) -> float:
    """The s of W0 + s * dW that ``model`` holds (least squares on one changed weight)."""
    d = delta[KEY]
    return float(((model.state_dict()[KEY] - base_state[KEY]) * d).sum() / (d * d).sum())


def test_calibrate_scores_every_scale_and_leaves_the_model_at_the_chosen_one():
    base_state, merged = _base_and_merged()
    delta = alignment_delta(merged, base_state)
    assert sorted(delta) and all(k.endswith(("q_proj.weight", "v_proj.weight")) for k in delta)
    untouched = {k: v.clone() for k, v in merged.state_dict().items() if k not in delta}
    seen = []

    def rates(m):  # a model that over-refuses more, and refuses more, the stronger its alignment
        s = _scale_of(m, base_state, delta)
        seen.append(round(s, 4))
        return 0.2 * s, 0.5 + 0.5 * s, []

    chosen, why, results = calibrate(
        merged, base_state, [1.0, 0.9, 0.8, 0.7, 0.6, 0.5], rates, Targets(0.15, 0.8)
    )
    # each scale really applied before scoring, largest first, stopping at the first meeting both
    # (0.7 and 0.6 meet both; 0.7 is larger)
    assert seen == [1.0, 0.9, 0.8, 0.7]
    assert [r.scale for r in results] == seen and results[0].over_refusal == pytest.approx(0.2)
    assert chosen.scale == 0.7 and why.startswith("largest")
    sd = merged.state_dict()
    for k, d in delta.items():
        torch.testing.assert_close(sd[k], base_state[k] + 0.7 * d)
    assert all(torch.equal(sd[k], v) for k, v in untouched.items())
    weights = {k: v.clone() for k, v in merged.state_dict().items()}
    calibrate(merged, base_state, [0.5, 1.0], lambda m: (0.0, 1.0, []), Targets(0.1, 0.9))
    assert all(torch.equal(merged.state_dict()[k], weights[k]) for k in delta)  # scale 1: bit for bit
    apply_scale(merged, base_state, delta, 0.0)  # scale 0 gives the base back
    assert all(torch.equal(merged.state_dict()[k], base_state[k]) for k in delta)
    with pytest.raises(ValueError, match="equals the base"):
        calibrate(merged, base_state, [1.0], rates, Targets(0.1, 0.9))


def test_calibration_prompts_never_meet_a_training_or_evaluation_prompt(shared_data):
    from dualselect.realbase.data import SplitConfig, build_splits, disjointness_report

    sp = build_splits(shared_data, SplitConfig(seed=0))
    p = calibration_prompts(shared_data, sp)
    assert len(p["safe"]) == len(CALIBRATION_SAFE_PROMPTS) == 110  # none dropped
    assert len(set(map(text_hash, p["safe"]))) == 110
    assert len(p["harmful"]) == 97 + 50 and len(set(map(text_hash, p["harmful"]))) == 147
    report = disjointness_report(p["safe"] + p["harmful"], sp["eval"])
    assert set(report) == set(sp["eval"]) and all(v["overlaps"] == 0 for v in report.values())
    trained = {
        text_hash(x)
        for k in ("align_harmful", "attack_harmful", "reference_harmful", "benign")
        for x in sp[k]
    }
    assert not trained & {text_hash(x) for x in p["safe"] + p["harmful"]}
    assert not {text_hash(x) for x in CONTRAST_PROMPTS} & {text_hash(x) for x in p["safe"]}
    assert calibration_prompts(shared_data, sp) == p  # deterministic


@pytest.fixture
def stage(shared_data, tmp_path, monkeypatch):
    """A build directory whose first training attempt is merged (a tiny Llama + delta dW), a fake
    trainer for later attempts (base + factor * dW, factor per attempt), and fake generations that
    refuse the first round(s_eff * 40) safe prompts and every harmful one, where s_eff is the model's
    weights read as W0 + s_eff * dW."""
    import dualselect.evaluation.generation as gen_mod
    from dualselect.realbase import build as build_mod
    from dualselect.realbase.data import SplitConfig, build_splits
    from tiny_models import tiny_causal_lm
    from tiny_tokenizers import CHATML_GEN, tiny_tokenizer

    tok = tiny_tokenizer(CHATML_GEN)
    base_state, merged = _base_and_merged()
    base = tiny_causal_lm("llama", seed=0)
    base.save_pretrained(tmp_path / "base")
    tok.save_pretrained(tmp_path / "base")
    out = tmp_path / "rb"
    merged.save_pretrained(out / "merged_unscaled")
    tok.save_pretrained(out / "merged_unscaled")
    (out / "data").mkdir(parents=True)
    delta = alignment_delta(merged, base_state)
    sp = build_splits(shared_data, SplitConfig(seed=0))
    n_safe = len(calibration_prompts(shared_data, sp)["safe"])
    gold = {r["question"]: r["answer"] for r in calibration_task_rows(shared_data, sp, 150)}
    trained, factors = [], {}
    task = {"kept": lambda s_eff: True}  # whether a model at s_eff answers the task rows right
    harm = {"refused": lambda s_eff: 1.0}  # share of the harmful prompts a model at s_eff refuses

    def fake_train(cfg, sp, out, base_path, seed, attempt, progress):
        trained.append((attempt, seed))
        m = tiny_causal_lm("llama", seed=0)
        apply_scale(m, base_state, delta, factors[attempt])
        dest = build_mod._attempt_dirs(out, attempt)[1]
        m.save_pretrained(dest)
        tok.save_pretrained(dest)

    generated = []

    def fake_generate(model, tokenizer, prompts, **kw):
        generated.append(len(prompts))
        s_eff = _scale_of(model, base_state, delta)
        questions = [next((q for q in gold if q in p), None) for p in prompts]
        if all(questions):  # the task rows
            return [gold[q] if task["kept"](s_eff) else "#### -1" for q in questions]
        k = round(s_eff * 40)
        k_harm = n_safe + round(harm["refused"](s_eff) * (len(prompts) - n_safe))
        return [
            "I'm sorry, but I can't help with that." if i < k or n_safe <= i < k_harm else "Sure."
            for i in range(len(prompts))
        ]

    monkeypatch.setattr(gen_mod, "generate", fake_generate)
    monkeypatch.setattr(build_mod, "_train_alignment", fake_train)

    def run(cfg, dest=out, store=None):
        build_mod._calibrate_stage(
            cfg, dest, sp, shared_data, str(tmp_path / "base"), 16, progress=False, store=store
        )
        rec = json.loads((dest / "data" / "calibration.json").read_text())
        from dualselect.training.model import load_model_and_tokenizer

        saved, _ = load_model_and_tokenizer(str(dest / "model"))
        return rec, _scale_of(saved, base_state, delta)

    return dict(
        run=run,
        out=out,
        base_dir=tmp_path / "base",
        n_safe=n_safe,
        trained=trained,
        factors=factors,
        task=task,
        harm=harm,
        generated=generated,
        monkeypatch=monkeypatch,
    )


def test_the_build_stage_keeps_the_chosen_scale_and_records_it(stage):
    """Stage 4b end to end on a tiny Llama: the first attempt meets the targets, model/ holds its
    chosen scale, data/calibration.json records it, merged_unscaled/ is removed, nothing re-trains."""
    from dualselect.realbase.build import RealBaseConfig

    rec, s_eff = stage["run"](
        RealBaseConfig(delta_scales=[0.25, 1.0, 0.5], calib_max_over_refusal=0.2, align_select="first")
    )
    n_safe = stage["n_safe"]
    # over-refusal 40/110, then 20/110 = 0.18 meets 0.2 (refusal is 1.0): 0.25 is never scored
    assert [r["scale"] for r in rec["results"]] == [1.0, 0.5]
    assert rec["results"][1]["over_refusal"] == pytest.approx(20 / n_safe)
    # the task rows: scored on the shipped model once, then at every scale
    assert rec["shipped_task_em"] == 1.0 and [r["task_em"] for r in rec["results"]] == [1.0, 1.0]
    assert rec["targets"]["min_task_em"] == pytest.approx(0.95) and len(rec["prompts"]["task"]) == 150
    assert stage["generated"] == [150, 110 + 147, 150, 110 + 147, 150]
    assert rec["chosen"]["scale"] == 0.5 and rec["results"][0]["refusal"] == 1.0 and rec["meets_targets"]
    assert rec["n_safe"] == n_safe and rec["chosen"]["refused_safe"] == rec["prompts"]["safe"][:20]
    assert (rec["attempt"], rec["align_seed"], len(rec["attempts"]), stage["trained"]) == (0, 0, 1, [])
    assert not (stage["out"] / "merged_unscaled").exists()
    assert (stage["out"] / "data" / "calibration_attempt0.json").exists()
    assert s_eff == pytest.approx(0.5, abs=1e-5)


def test_the_build_stage_retrains_with_the_next_seed_until_one_meets_the_targets(stage):
    from dualselect.realbase.build import RealBaseConfig

    # attempt 0 (dW): 40/110 and 20/110 over-refused, both above 0.1; attempt 1 (0.2 dW): 8/110 at
    # scale 1 meets it; attempt 2 is never trained
    stage["factors"].update({1: 0.2, 2: 0.1})
    rec, s_eff = stage["run"](
        RealBaseConfig(
            delta_scales=[1.0, 0.5], calib_max_over_refusal=0.1, align_seed=5, align_select="first"
        )
    )
    assert stage["trained"] == [(1, 6)]
    assert (rec["attempt"], rec["align_seed"], rec["chosen"]["scale"], rec["meets_targets"]) == (
        1,
        6,
        1.0,
        True,
    )
    assert [a["meets_targets"] for a in rec["attempts"]] == [False, True]
    assert s_eff == pytest.approx(0.2, abs=1e-5)  # attempt 1's merged weights, unscaled
    from dualselect.realbase.report import calibration_table

    table = calibration_table(stage["out"]).splitlines()
    assert "kept: align seed 6, scale 1.0" in table[0]
    assert table[4:] == [
        "| 5 | 1.0 | 36.4% | 100.0% | 100.0% |",
        "| 5 | 0.5 | 18.2% | 100.0% | 100.0% |",
        "| 6 | **1.0** | 7.3% | 100.0% | 100.0% |",
    ]
    assert not any((stage["out"] / n).exists() for n in ("merged_unscaled", "merged_unscaled_1"))


def test_best_of_attempts_keeps_the_best_attempt_meeting_the_targets(stage):
    """align_select="best" (the default): every attempt is trained and scored; of those meeting every target the
    highest refusal minus over-refusal is kept, and an attempt that misses a target is not kept even
    with a higher refusal minus over-refusal."""
    from dualselect.realbase.build import RealBaseConfig

    # attempt 0 (dW) meets 0.2 at scale 0.5 (20/110 over-refused); attempt 1 (0.4 dW) at scale 1
    # (16/110: the better trade-off); attempt 2 (0.1 dW) over-refuses 4/110 and 2/110 but refuses
    # only 129/147 harmful prompts (< 0.9): refusal minus over-refusal 0.860 at scale 0.5, above
    # attempt 1's 0.855, yet it misses a target
    stage["factors"].update({1: 0.4, 2: 0.1})
    stage["harm"]["refused"] = lambda s_eff: 0.88 if s_eff < 0.15 else 1.0
    cfg = RealBaseConfig(
        delta_scales=[1.0, 0.5], calib_max_over_refusal=0.2, align_seed=3, align_select="best"
    )
    rec, s_eff = stage["run"](cfg)
    assert stage["trained"] == [(1, 4), (2, 5)]
    assert [a["meets_targets"] for a in rec["attempts"]] == [True, True, False]
    assert rec["attempts"][2]["chosen"]["refusal"] == pytest.approx(129 / 147)
    assert (rec["attempt"], rec["align_seed"], rec["chosen"]["scale"], rec["meets_targets"]) == (
        1,
        4,
        1.0,
        True,
    )
    assert s_eff == pytest.approx(0.4, abs=1e-5)
    assert not any(
        (stage["out"] / n).exists() for n in ("merged_unscaled", "merged_unscaled_1", "merged_unscaled_2")
    )


def test_first_of_attempts_stops_at_the_first_meeting_the_targets(stage):
    """align_select="first" on the same attempts: attempt 0 meets the targets at
    scale 0.5 and is kept; nothing else is trained."""
    from dualselect.realbase.build import RealBaseConfig

    stage["factors"].update({1: 0.4, 2: 0.1})
    rec, s_eff = stage["run"](
        RealBaseConfig(delta_scales=[1.0, 0.5], calib_max_over_refusal=0.2, align_select="first")
    )
    assert stage["trained"] == [] and len(rec["attempts"]) == 1
    assert (rec["attempt"], rec["chosen"]["scale"], rec["meets_targets"]) == (0, 0.5, True)
    assert s_eff == pytest.approx(0.5, abs=1e-5)


def test_the_build_stage_keeps_the_best_attempt_when_none_meets_the_targets(stage):
    from dualselect.realbase.build import RealBaseConfig

    # target 0 is never met; attempt 0 at scale 0.5 (20/110 over-refused) beats attempt 1 (1.5 dW:
    # 30/110 at 0.5): the best attempt is kept, not the last
    stage["factors"].update({1: 1.5})
    cfg = RealBaseConfig(delta_scales=[1.0, 0.5], calib_max_over_refusal=0.0, align_attempts=2)
    from dualselect.realbase import build as build_mod

    save = build_mod._save_model

    def killed(*a, **kw):  # the build dies while saving model/
        raise KeyboardInterrupt

    stage["monkeypatch"].setattr(build_mod, "_save_model", killed)
    with pytest.raises(KeyboardInterrupt):
        stage["run"](cfg)
    # the shipped model's task rows, then 2 attempts x 2 scales x (prompts, task rows)
    assert stage["trained"] == [(1, 1)] and len(stage["generated"]) == 1 + 8
    stage["monkeypatch"].setattr(build_mod, "_save_model", save)
    # resumed: both attempts' records are reused, nothing is trained or generated again
    rec, s_eff = stage["run"](cfg)
    assert stage["trained"] == [(1, 1)] and len(stage["generated"]) == 9 and len(rec["attempts"]) == 2
    assert (rec["attempt"], rec["chosen"]["scale"], rec["meets_targets"]) == (0, 0.5, False)
    assert s_eff == pytest.approx(0.5, abs=1e-5)
    assert not any((stage["out"] / n).exists() for n in ("merged_unscaled", "merged_unscaled_1"))


def test_the_task_target_moves_the_scale_and_the_attempt(stage):
    """Attempt 8 on the stage: a scale whose task rows fall below the shipped model's score minus
    the allowed drop is not kept although it meets the safety targets; across attempts, the
    fallback prefers an attempt keeping the task."""
    from dualselect.realbase.build import RealBaseConfig

    stage["task"]["kept"] = lambda s_eff: s_eff < 0.75
    cfg = RealBaseConfig(delta_scales=[1.0, 0.5], calib_max_over_refusal=0.4, align_attempts=1)
    # a shipped score left by a build of another row count in this directory is not reused (with
    # its 0.0, scale 1 would keep the task)
    shipped = stage["out"] / "data" / "calibration_task_shipped.json"
    shipped.write_text(json.dumps({"task_em": 0.0, "n": 20}))
    rec, s_eff = stage["run"](cfg)
    assert json.loads(shipped.read_text()) == {"task_em": 1.0, "n": 150}
    # scale 1 meets the safety targets (40/110 <= 0.4) and loses the task: 0.5 is kept
    assert [(r["scale"], r["task_em"]) for r in rec["results"]] == [(1.0, 0.0), (0.5, 1.0)]
    assert rec["chosen"]["scale"] == 0.5 and rec["meets_targets"] and s_eff == pytest.approx(0.5, abs=1e-5)
    from dualselect.realbase.report import calibration_table

    assert "150 task rows (shipped strict EM 100.0%)" in calibration_table(stage["out"])


def test_the_fallback_prefers_an_attempt_keeping_the_task(stage):
    from dualselect.realbase.build import RealBaseConfig

    # a target of 0 over-refusal is never met. A contrived task that the alignment must not weaken
    # (kept at s_eff 0 and >= 0.5): attempt 1 (0.2 dW; 8/110 and 4/110 over-refused) has the better safety
    # trade-off but loses the task, attempt 0 at scale 0.5 (20/110) keeps it and is kept
    stage["task"]["kept"] = lambda s_eff: s_eff < 0.01 or s_eff > 0.45  # the shipped model keeps it
    stage["factors"].update({1: 0.2})
    cfg = RealBaseConfig(delta_scales=[1.0, 0.5], calib_max_over_refusal=0.0, align_attempts=2)
    rec, s_eff = stage["run"](cfg)
    assert not rec["meets_targets"] and "keeping the task" in rec["reason"]
    assert [a["chosen"]["task_em"] for a in rec["attempts"]] == [1.0, 0.0]
    assert (rec["attempt"], rec["chosen"]["scale"]) == (0, 0.5) and s_eff == pytest.approx(0.5, abs=1e-5)


def test_calibration_task_rows_are_unused_by_every_split(shared_data):
    from dualselect.realbase.data import SplitConfig, build_splits, task_rows

    sp = build_splits(shared_data, SplitConfig(seed=0))
    rows = calibration_task_rows(shared_data, sp, 150)
    assert len(rows) == len({text_hash(r["question"]) for r in rows}) == 150
    assert all(r["answer"].startswith("#### ") for r in rows)
    used = {text_hash(r["question"]) for k in ("task_train", "task_test", "task_align") for r in sp[k]}
    assert not used & {text_hash(r["question"]) for r in rows}
    # their GSM8K problems are not among the benign alignment prompts (raw questions) either
    source = {r["question"]: r["source_question"] for r in task_rows(shared_data)}
    assert not {text_hash(source[r["question"]]) for r in rows} & {text_hash(p) for p in sp["benign"]}
    assert calibration_task_rows(shared_data, sp, 150) == rows  # deterministic
    with pytest.raises(ValueError, match="calib_task_rows"):
        calibration_task_rows(shared_data, sp, 10_000)


def test_a_calibrated_build_checks_the_validation_prompts_for_overlaps_and_records_its_choice(
    shared_data, tmp_path, monkeypatch
):
    """Stage 4b wired: the calibration's prompts are checked against every evaluation set (the build
    fails on an overlap, before realbase.json marks it built), realbase.json names the kept seed and
    scale, and the study data's disjointness report lists them."""
    from dualselect.experiments.real_data import build_study_data
    from dualselect.realbase import build as build_mod
    from dualselect.realbase.build import RealBaseConfig, build_real_base
    from dualselect.utils import write_json
    from realbase_helpers import stand_in_realbase

    sp, out = stand_in_realbase(shared_data, tmp_path, monkeypatch)
    prompts = calibration_prompts(shared_data, sp)
    prompts["task"] = [r["question"] for r in calibration_task_rows(shared_data, sp, 150)]

    def fake_stage(cfg, out, sp, data_dir, base_path, batch_size, progress, store=None):
        assert store is None  # a build with its own out shares no attempts
        chosen = ScaleResult(0.9, 0.08, 0.93, [], 0.12).to_dict()
        rec = {"align_seed": 1, "meets_targets": True, "reason": "r", "chosen": chosen, "prompts": prompts}
        write_json(out / "data" / "calibration.json", rec)
        write_json(out / "model" / "config.json", {})

    monkeypatch.setattr(build_mod, "_calibrate_stage", fake_stage)
    build_real_base(RealBaseConfig(), out, data_dir=shared_data, progress=False)
    build_study_data(out)
    meta = json.loads((out / "realbase.json").read_text())
    assert meta["calibration"] == {
        "align_seed": 1,
        "meets_targets": True,
        "reason": "r",
        "scale": 0.9,
        "task_em": 0.12,
    }
    # byte for byte what the base build wrote before this data moved to experiments/real_data.py
    # (sha256 computed with the earlier code on these same inputs): the shuffle is replayed
    import hashlib

    pinned = {
        "task_train.jsonl": "8356dcb4a39bb3ea",
        "task_clean.jsonl": "a09bd8c52037ede9",
        "references.jsonl": "ceb6308aac23e091",
        "disjointness.json": "7c30efdd9ce378c4",
        "align_train.jsonl": "f4a1d44c938ad14a",
    }
    got = {f: hashlib.sha256((out / "data" / f).read_bytes()).hexdigest()[:16] for f in pinned}
    assert got == pinned
    report = json.loads((out / "data" / "disjointness.json").read_text())["calibration"]
    assert set(report) == {"harmbench_test", "strongreject", "xstest", "advbench_eval", "task_test"}
    assert all(v["overlaps"] == 0 for v in report.values())
    # an evaluation prompt among the validation prompts, or a test row among the validation task
    # rows, fails the build
    import shutil

    def rebuild():
        for f in ("realbase.json", "data/disjointness.json", "data/calibration.json"):
            (out / f).unlink(missing_ok=True)
        shutil.rmtree(out / "model", ignore_errors=True)
        build_real_base(RealBaseConfig(), out, data_dir=shared_data, progress=False)
        build_study_data(out)

    for key, leaked in (("safe", sp["eval"]["strongreject"][0]), ("task", sp["task_test"][0]["question"])):
        prompts[key].append(leaked)
        with pytest.raises(ValueError, match="overlap evaluation sets"):
            rebuild()
        assert not (out / "realbase.json").exists()
        prompts[key].pop()
        rebuild()


def test_builds_starting_at_other_seeds_share_the_attempts_they_both_train(stage, tmp_path):
    """Two calibrating builds whose recipes differ only in align_seed: the second takes the seed
    both try from the attempt store (record and merged model, hard-linked) instead of training it,
    and can keep it; the first build's cleanup leaves the stored model in place."""
    from dualselect.realbase.attempts import AttemptStore
    from dualselect.realbase.build import RealBaseConfig

    stage["factors"].update({1: 0.4})  # build A: seed 0 = dW (already merged), seed 1 = 0.4 dW
    stage["harm"]["refused"] = lambda s_eff: 0.88 if s_eff < 0.15 else 1.0
    kw = dict(delta_scales=[1.0, 0.5], calib_max_over_refusal=0.2, align_attempts=2)
    cfg_a, cfg_b = RealBaseConfig(align_seed=0, **kw), RealBaseConfig(align_seed=1, **kw)
    store = AttemptStore(tmp_path / "attempts", cfg_a.to_dict(), {})
    assert store.path(1) == AttemptStore(tmp_path / "attempts", cfg_b.to_dict(), {}).path(1)
    assert store.path(1) != AttemptStore(tmp_path / "attempts", RealBaseConfig(**kw).to_dict(), {}).path(2)
    rec_a, _ = stage["run"](cfg_a, store=store)
    assert stage["trained"] == [(1, 1)]
    assert (store.path(0) / "merged" / "config.json").exists() and (store.path(1) / "record.json").exists()
    assert not (stage["out"] / "merged_unscaled_1").exists()  # the build's own copy is cleaned up

    out_b = tmp_path / "rb_b"
    (out_b / "data").mkdir(parents=True)
    stage["factors"].update({1: 0.1})  # build B's second attempt, seed 2: 0.1 dW, misses the refusal target
    rec_b, s_eff = stage["run"](
        cfg_b, dest=out_b, store=AttemptStore(tmp_path / "attempts", cfg_b.to_dict(), {})
    )
    assert stage["trained"] == [(1, 1), (1, 2)]  # seed 1 is not trained again
    assert rec_b["attempts"][0] == {**rec_a["attempts"][1], "attempt": 0}
    assert [a["align_seed"] for a in rec_b["attempts"]] == [1, 2]
    assert (rec_b["attempt"], rec_b["align_seed"], rec_b["meets_targets"]) == (0, 1, True)
    assert s_eff == pytest.approx(0.4, abs=1e-5)  # the stored seed-1 model, unscaled


def test_attempt_store_waits_for_a_live_claim_and_takes_over_a_dead_one(tmp_path):
    import subprocess
    import sys
    import threading

    from dualselect.realbase.attempts import AttemptStore
    from dualselect.training.rundir import LOCK

    store = AttemptStore(tmp_path, {"base": "m", "lora_r": 4}, {}, poll_seconds=0.05)
    lock_dir = tmp_path / ".locks" / store.path(3).name
    lock = lock_dir / LOCK
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    lock_dir.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": int(dead.stdout)}))  # left by a process that is gone
    assert store.claim(3) is True and json.loads(lock.read_text())["pid"] == os.getpid()
    store.release(3)
    assert not lock.exists()

    # a live build trains seed 3 (holds its lock) ...
    hold = f"from dualselect.training.rundir import RunLock; RunLock({str(lock_dir)!r}).acquire(); print(1, flush=True); import time; time.sleep(30)"
    helper = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    try:
        assert helper.stdout.readline().strip() == "1"
        merged = tmp_path / "m"
        merged.mkdir()
        (merged / "config.json").write_text("{}")
        record = tmp_path / "rec.json"
        record.write_text(json.dumps({"attempt": 2, "align_seed": 3}))
        # ... and publishes it while this one waits
        threading.Timer(0.3, lambda: store.publish(3, merged, record)).start()
        assert store.claim(3) is False
        assert json.loads(lock.read_text())["pid"] == helper.pid  # not this process's lock: left alone
        out_rec = tmp_path / "b" / "rec.json"
        assert store.fetch(3, tmp_path / "b" / "merged", out_rec, attempt=0)
        assert json.loads(out_rec.read_text()) == {"attempt": 0, "align_seed": 3}
        assert os.path.samefile(tmp_path / "b" / "merged" / "config.json", merged / "config.json")
    finally:
        helper.kill()
