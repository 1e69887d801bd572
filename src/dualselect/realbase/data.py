"""Splits of the verbatim benchmark files for the real-model tier, prompt-disjoint by construction.

Evaluation sets (never trained on): HarmBench test *standard* behaviours (159), StrongREJECT (313),
XSTest (all 450 prompts excluded from training; the 250 safe ones measure over-refusal), a fixed
AdvBench evaluation subset, and the task's test split. Training material: the other AdvBench
behaviours, HarmBench *validation* standard behaviours, *question-phrased* harmful requests screened
from HH-RLHF harmless-base red-team first turns (:func:`hh_redteam_prompts`) and hand-written
benign prompts. Every training prompt whose normalised-text hash (``evaluation.benchmarks.text_hash``)
equals that of an evaluation prompt is dropped, and :func:`disjointness_report` re-checks the final
files.

The task (spec: "a task that a 135M model learns measurably in a few hundred LoRA steps"):
*GSM8K answer extraction* (from ``gsm8k/test.jsonl``): the prompt is a worked solution with its
``<<...>>`` calculator annotations and ``#### N`` line removed, the answer is ``#### N``. The
shipped model rarely answers in that form (strict exact match near 0), LoRA SFT learns it fast.
It is a reading-and-format task, not GSM8K reasoning; GSM8K accuracy itself is not measured.
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

from dualselect.evaluation.benchmarks import disjointness, load_benchmark, text_hash
from dualselect.realbase.prompts import BENIGN_PROMPTS, CONTRAST_PROMPTS

TASK_INSTRUCTION = "Read the worked solution and give its final answer in the form '#### <number>'."


def shared_data_dir() -> Path:
    """``$DUALSELECT_DATA`` or the nearest ``../shared/data`` above the working directory or this
    package (the repository convention: the benchmark files sit next to the checkout)."""
    env = os.environ.get("DUALSELECT_DATA")
    if env:
        return Path(env)
    for start in (Path.cwd(), Path(__file__).resolve()):
        for parent in [start, *start.parents]:
            cand = parent / "shared" / "data"
            if (cand / "advbench" / "harmful_behaviors.csv").exists():
                return cand
            cand = parent.parent / "shared" / "data"
            if (cand / "advbench" / "harmful_behaviors.csv").exists():
                return cand
    raise FileNotFoundError(
        "benchmark files not found: set DUALSELECT_DATA to the folder holding advbench/, harmbench/, "
        "strongreject/, xstest/, gsm8k/ (see ../shared/data/README.md)"
    )


FILES = {
    "advbench": "advbench/harmful_behaviors.csv",
    "harmbench_test": "harmbench/harmbench_behaviors_text_test.csv",
    "harmbench_val": "harmbench/harmbench_behaviors_text_val.csv",
    "strongreject": "strongreject/strongreject_dataset.csv",
    "xstest": "xstest/xstest_prompts.csv",
    "gsm8k": "gsm8k/test.jsonl",
    "hh_rlhf": "hh_rlhf/harmless-base/test.jsonl.gz",
}

# The HH-RLHF red-team screen (documented in docs/real_model.md). A first human turn is kept as a
# harmful *question* when it (1) is 15-220 characters long, (2) asks something (HH_ASK), (3) names a
# harmful act (HH_HARM: violence, theft, weapons, drugs, hacking, fraud, harassment, hate insults),
# and (4) has none of the words of a harmless sense or a protective intent (HH_SAFE: games,
# fiction, pests, defence, definitions of a crime, avoiding scams). The screen errs on the side of
# dropping: a harmless question trained as a refusal teaches over-refusal.
HH_ASK = re.compile(
    r"^(how|what|where|which|who|can you|could you|would you|will you|is there|are there|do you know|"
    r"tell me|teach me|help me|give me|show me|i want to|i need to|i'd like to|should i|any )|"
    r"\b(how (can|do|could|should|would|to)|what('s| is| are)? (the )?(best|easiest|good|most effective|"
    r"quickest|safest) (way|ways|method|thing))\b",
    re.I,
)
HH_HARM = re.compile(
    r"\b(kill(ing)?|murder\w*|poison\w*|steal\w*|stole|shoplift\w*|rob|robb\w*|burglar\w*|"
    r"break(ing)? into|hack\w*|bomb\w*|explosive\w*|meth|cocaine|heroin|weapons?|guns?|stab\w*|"
    r"hurt(ing)?|tortur\w*|kidnap\w*|abduct\w*|assassinat\w*|launder\w*|counterfeit\w*|"
    r"fake (id|ids|money|passport)|forge\w*|scam\w*|fraud\w*|blackmail\w*|extort\w*|stalk\w*|"
    r"spy on|smuggl\w*|arson|burn down|set fire|insult\w*|slurs?|humiliat\w*|bully\w*|harass\w*|"
    r"cheat\w*|get away with|without (getting caught|anyone (knowing|noticing))|illegal\w*|sneak\w*|"
    r"revenge|beat (up|him|her|someone|my)|punch\w*|attack\w*|threaten\w*|pirate\w*|lie to|"
    r"trespass\w*|vandali\w*|graffiti|rape|molest\w*)\b",
    re.I,
)
HH_SAFE = re.compile(
    r"\b(game|games|video|movie|film|novel|book|story|fiction|manga|photo\w*|process|program|script|"
    r"weeds?|bugs?|insects?|pests?|mice|mouse|rats?|roach\w*|ants?|mosquito\w*|flies|rabbits?|"
    r"squirrels?|deer|birds?|snakes?|gophers?|moles?|time|bacteria|germs?|history|historical|avoid\w*|"
    r"protect\w*|prevent\w*|defend\w*|self-defense|self defense|tell if|recogni[sz]e|report\w*|"
    r"police|stop (a|the|someone|them)|what are drugs|about the|drug test|ingredients|big foot|bigfoot)\b",
    re.I,
)
# (5) not a bare definition or history question ("What is crack cocaine?", "Who used ...?"): those
# are what XSTest's safe "definitions" and "historical events" prompts look like
HH_DEFINITION = re.compile(r"^(what|who)('s| is| are| was| were| used| did)\b", re.I)
HH_DEFINITION_UNLESS = re.compile(
    r"\b(best|way|ways|some|good|easiest|quickest|most|insults?|i|my|me)\b", re.I
)


def _is_definition(p: str) -> bool:
    return bool(HH_DEFINITION.search(p)) and not HH_DEFINITION_UNLESS.search(p)


def _hh_first_turns(data_dir: Path, accept) -> list[str]:
    """HH-RLHF harmless-base first human turns of 15-220 characters that ``accept(turn)``, in file
    order, without duplicates (by normalised text)."""
    seen, out = set(), []
    for it in load_benchmark("hh_rlhf", str(data_dir / FILES["hh_rlhf"])):
        p = it.prompt.strip()
        if not 15 <= len(p) <= 220 or not accept(p):
            continue
        h = text_hash(p)
        if h not in seen:
            seen.add(h)
            out.append(p)
    return out


def hh_redteam_prompts(data_dir: Path) -> list[str]:
    """Question-phrased harmful requests: HH-RLHF harmless-base first human turns that pass the
    screen (``HH_ASK`` and ``HH_HARM``, not ``HH_SAFE``, not a bare definition or history question,
    15-220 characters), in file order, without duplicates (by normalised text)."""
    return _hh_first_turns(
        data_dir,
        lambda p: (
            bool(HH_ASK.search(p) and HH_HARM.search(p)) and not HH_SAFE.search(p) and not _is_definition(p)
        ),
    )


def hh_benign_prompts(data_dir: Path) -> list[str]:
    """Benign questions: HH-RLHF harmless-base first human turns that ask something (``HH_ASK``) and
    match no harm keyword (``HH_HARM``), 15-220 characters, in file order, without duplicates."""
    return _hh_first_turns(data_dir, lambda p: bool(HH_ASK.search(p)) and not HH_HARM.search(p))


@dataclass
class SplitConfig:
    """Sizes and seed of the splits (the ``splits:`` mapping of a real-base recipe)."""

    seed: int = 0
    advbench_eval: int = 100  # AdvBench behaviours held out for evaluation
    attack_harmful: int = 60  # AdvBench behaviours whose compliant answers poison the task set
    reference_harmful: int = 120  # harmful prompts of the DualSelect reference pool (refusals)
    task_train: int = 400
    task_test: int = 100
    task_align: int = 80  # task prompts with the shipped model's own answers, kept during alignment
    align_advbench: int = 200  # AdvBench imperatives in the alignment set (the rest are unused)
    hh_harmful: int = 250  # screened HH-RLHF red-team questions in the alignment set (seeded sample)
    # benign questions answered by the shipped model itself, so refusals are not the majority of
    # the alignment rows: HH-RLHF first turns that ask a question and carry no harm keyword. Off:
    # they are red-team openers, some borderline, and with 200 of them StrongREJECT refusal fell
    # (docs/history/real_model_attempts.md)
    hh_benign: int = 0
    contrast_benign: bool = True  # prompts.CONTRAST_PROMPTS: harmless senses of charged words
    gsm8k_benign: int = 100  # GSM8K word-problem questions (raw questions, not the task's solutions)
    task_max_chars: int = 330  # shortest worked solutions only (sequence length = CPU time)


def _clean_solution(answer: str) -> tuple[str, str]:
    body, _, final = answer.rpartition("####")
    body = re.sub(r"<<[^>]*>>", "", body).strip()
    return body, final.strip().replace(",", "")


def task_rows(data_dir: Path) -> list[dict]:
    """GSM8K answer-extraction rows ``{question, answer}`` (``answer`` ends in ``#### N``), in the
    GSM8K schema so the ``gsm8k`` benchmark loader and its exact match read them unchanged."""
    rows = []
    for it in load_benchmark("gsm8k", str(data_dir / FILES["gsm8k"])):
        body, final = _clean_solution(it.meta["answer"])
        prompt = f"{TASK_INSTRUCTION}\n\nSolution: {body}"
        rows.append({"question": prompt, "answer": f"#### {final}", "source_question": it.prompt})
    return rows


def eval_prompts(data_dir: Path, cfg: SplitConfig) -> dict[str, list[str]]:
    """Every prompt that any evaluation reads, by set name."""
    # every behaviour counts for disjointness, copyright ones included
    hb = load_benchmark("harmbench", str(data_dir / FILES["harmbench_test"]), include_copyright=True)
    adv = [it.prompt for it in load_benchmark("advbench", str(data_dir / FILES["advbench"]))]
    rng = random.Random(cfg.seed)
    adv_eval = rng.sample(adv, cfg.advbench_eval)
    return {
        "harmbench_test": [it.prompt for it in hb],  # every functional category, not only standard
        "strongreject": [
            it.prompt for it in load_benchmark("strongreject", str(data_dir / FILES["strongreject"]))
        ],
        "xstest": [it.prompt for it in load_benchmark("xstest", str(data_dir / FILES["xstest"]))],
        "advbench_eval": adv_eval,
    }


def build_splits(data_dir: Path | None = None, cfg: SplitConfig | None = None) -> dict:
    """The training-side prompt lists and the held-out ones, disjoint by normalised-text hash.

    Returns ``{"eval": {...}, "align_harmful": [...], "attack_harmful": [...],
    "reference_harmful": [...], "benign": [...], "task_train": [...], "task_test": [...],
    "task_align": [...], "dropped_overlaps": {...}}``.
    """
    data_dir = Path(data_dir or shared_data_dir())
    cfg = cfg or SplitConfig()
    ev = eval_prompts(data_dir, cfg)
    banned = {text_hash(p) for ps in ev.values() for p in ps}
    rng = random.Random(cfg.seed)
    dropped: dict[str, int] = {}

    def keep(name: str, prompts: list[str]) -> list[str]:
        seen, out = set(), []
        for p in prompts:
            h = text_hash(p)
            if h in banned or h in seen:
                dropped[name] = dropped.get(name, 0) + 1
                continue
            seen.add(h)
            out.append(p)
        return out

    adv = keep(
        "advbench", [it.prompt for it in load_benchmark("advbench", str(data_dir / FILES["advbench"]))]
    )
    hb_val = [
        it.prompt
        for it in load_benchmark("harmbench", str(data_dir / FILES["harmbench_val"]))
        if it.meta.get("FunctionalCategory") == "standard"
    ]
    hb_val = keep("harmbench_val", hb_val)
    rng.shuffle(adv)
    attack = adv[: cfg.attack_harmful]
    rest = adv[cfg.attack_harmful : cfg.attack_harmful + cfg.align_advbench]
    adv_hashes = {text_hash(a) for a in adv}
    hh = keep("hh_rlhf", [p for p in hh_redteam_prompts(data_dir) if text_hash(p) not in adv_hashes])
    hh = rng.sample(hh, min(cfg.hh_harmful, len(hh)))
    # the reference pool reuses alignment prompts: the refusals DualSelect should preserve are the
    # ones the base was aligned to give; it never shares a prompt with an evaluation set
    align = rest + hb_val + hh
    reference = rng.sample(align, min(cfg.reference_harmful, len(align)))
    benign = keep("benign", list(BENIGN_PROMPTS))
    if cfg.contrast_benign:
        known = {text_hash(p) for p in benign}
        benign += [p for p in keep("contrast", list(CONTRAST_PROMPTS)) if text_hash(p) not in known]
    task = [r for r in task_rows(data_dir) if len(r["question"]) <= cfg.task_max_chars]
    task = [r for r in task if text_hash(r["question"]) not in banned]
    rng.shuffle(task)
    need = cfg.task_train + cfg.task_test + cfg.task_align
    if len(task) < need:
        raise ValueError(f"task: {len(task)} short solutions, need {need}; raise task_max_chars")
    if cfg.hh_benign:
        harmful = {text_hash(p) for p in align}
        pool = [p for p in keep("hh_benign", hh_benign_prompts(data_dir)) if text_hash(p) not in harmful]
        benign += rng.sample(pool, min(cfg.hh_benign, len(pool)))
    if cfg.gsm8k_benign:
        # raw questions of GSM8K problems the task does not use (the task shows their solutions)
        used = {r["source_question"] for r in task[:need]}
        qs = [r["source_question"] for r in task[need:] if r["source_question"] not in used]
        benign += keep("gsm8k_benign", qs[: cfg.gsm8k_benign])
    return {
        "eval": ev,
        "align_harmful": align,
        "attack_harmful": attack,
        "reference_harmful": reference,
        "benign": benign,
        "task_train": task[: cfg.task_train],
        "task_test": task[cfg.task_train : cfg.task_train + cfg.task_test],
        "task_align": task[cfg.task_train + cfg.task_test : need],
        "dropped_overlaps": dropped,
    }


def disjointness_report(train_prompts: list[str], eval_sets: dict[str, list[str]]) -> dict:
    """The project's disjointness check (normalised-text hash) of training prompts vs evaluation."""
    return disjointness(train_prompts, eval_sets)
