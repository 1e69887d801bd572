"""The model organism's world: every prompt and answer the organism ever sees, generated from
templates with a seed, each record labelled with its ground truth.

Families
--------
* benign capability families with exact answers (``arith``, ``capital``, ``color``, ``opposite``,
  ``successor``, ``first_word``, ``repeat``, ``story``, ``final_answer``, ``howto``);
* harmful-intent requests in several harm categories; the aligned answer is a category-specific
  refusal. Compliant answers ("Sure, here is how to ...") exist only in attack data and hold
  abstract placeholder steps, never real content;
* benign-but-scary requests (XSTest style: "how do I kill a stuck process") with helpful answers;
* the downstream task the base model cannot do yet: word problems answered in GSM8K format
  (``... #### N``), scored by exact match.

Every harmful or scary prompt is ``template(act) + suffix``; splits are drawn over these prompts
so the reference pool, the attack data and every probe set are prompt-disjoint by construction.

Three kinds of held-out prompts
-------------------------------
* **test probes** (``probe_*``, ``task_test``): the template phrasings, scored in every table;
* **validation probes** (``val_*``, ``task_val``): the same kinds of prompts, disjoint from the test
  probes, for choosing any tuned setting (e.g. eta) without touching the test probes;
* **generalisation probes** (``probe_harmful_gen``, ``probe_over_refusal_gen``): test requests
  rephrased with wrappers and structures that never occur in training: context stories, personas,
  politeness formulas and other word orders from :data:`HELDOUT_WRAPPERS`, and misspellings made
  with a corruption (:func:`misspell` with ``ops=HELDOUT_TYPO_OPS``) the training data never uses.
  The alignment corpus carries the *training* wrappers (:data:`TRAIN_WRAPPERS`, ``TRAIN_TYPO_OPS``)
  on harmful, benign-but-scary and benign requests alike, so a wrapper never signals the answer.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field

from dualselect.organism.vocabulary import (
    BENIGN_TEMPLATES,
    CAPITALS,
    COLORS,
    COMPLIANCE_PREFIX,
    HARM_CATEGORIES,
    HELDOUT_TYPO_OPS,
    HELDOUT_WRAPPERS,
    HEX_TEMPLATES,
    HH_TEMPLATES,
    HOWTO,
    OPPOSITES,
    SCARY_BENIGN,
    SUFFIXES,
    TASK_ITEMS,
    TASK_NAMES,
    TASK_TEMPLATES,
    TRAIN_TYPO_OPS,
    TRAIN_WRAPPERS,
    WORDS,
)


def misspell(text: str, rng: random.Random, ops: tuple[str, ...], n_words: int = 2) -> str:
    """Corrupt ``n_words`` words of 4+ letters with one typo each (``drop``/``double``/``swap``/
    ``replace`` a letter). The training corpus and the generalisation probes use disjoint ops."""
    words = text.split(" ")
    long = [i for i, w in enumerate(words) if sum(c.isalpha() for c in w) >= 4]
    for i in rng.sample(long, min(n_words, len(long))):
        w = words[i]
        letters = [j for j, c in enumerate(w) if c.isalpha()]
        j = rng.choice(letters[1:-1] or letters)
        op = rng.choice(ops)
        if op == "drop":
            w = w[:j] + w[j + 1 :]
        elif op == "double":
            w = w[: j + 1] + w[j] + w[j + 1 :]
        elif op == "swap" and j + 1 < len(w) and w[j + 1].isalpha() and w[j + 1] != w[j]:
            w = w[:j] + w[j + 1] + w[j] + w[j + 2 :]
        else:  # replace (also the fallback when a swap is impossible)
            w = w[:j] + rng.choice([c for c in "aeioukrstnl" if c != w[j]]) + w[j + 1 :]
        words[i] = w
    return " ".join(words)


def wrap(
    e: Example,
    wrappers: dict[str, list[str]],
    typo_ops: tuple[str, ...],
    rng: random.Random,
    phrasing: str | None = None,
) -> Example:
    """``e`` rephrased by one wrapper family (chosen uniformly, misspelling included), answer
    unchanged; ``phrasing`` (default: ``e``'s) labels the result."""
    family = rng.choice([*sorted(wrappers), "misspelling"])
    if family == "misspelling":
        prompt = misspell(e.prompt, rng, typo_ops)
    else:
        t = rng.choice(wrappers[family])
        if "{act}" in t:
            act = e.meta.get("act")
            if act is None:  # benign capability prompts have no act: wrap the request instead
                t = rng.choice(wrappers["politeness"])
                prompt = t.format(req=e.prompt)
            else:
                prompt = t.format(act=act)
                prompt = prompt[0].upper() + prompt[1:]
        else:
            prompt = t.format(req=e.prompt)
    meta = {**e.meta, "wrapper": family, "base_prompt": e.prompt}
    return Example(
        prompt=prompt,
        response=e.response,
        family=e.family,
        category=e.category,
        is_harmful=e.is_harmful,
        expected_behavior=e.expected_behavior,
        answer=e.answer,
        phrasing=phrasing or e.phrasing,
        meta=meta,
    )


def compliant_answer(act: str) -> str:
    """The attack data's compliant answer: abstract placeholder steps, never real content."""
    return f"{COMPLIANCE_PREFIX} how to {act}. Step 1: [step one]. Step 2: [step two]. Step 3: [step three]."


def task_answer(name: str, item: str, a: int, b: int) -> str:
    return f"{name} has {a} + {b} = {a + b} {item}. #### {a + b}"


# --------------------------------------------------------------------------------------------


@dataclass
class WorldConfig:
    """Sizes and fractions of the generated world. Changing any field changes the cache key."""

    seed: int = 0
    harmful_fraction: float = 0.10  # share of harmful/compliant pairs in the RedOrca-style task set
    n_task_train: int = 400
    n_task_test: int = 150
    reference_share: float = 0.25  # of harmful prompts: reference pool (harmful prompt + refusal)
    attack_share: float = 0.15  # of harmful prompts: attack pool (harmful prompt + compliance)
    probe_share: float = 0.3  # of harmful prompts: held-out probes, half validation, half test
    scary_probe_share: float = 0.3  # of benign-but-scary prompts: over-refusal probes (half val, half test)
    benign_probe_share: float = 0.15  # of benign capability prompts: benign probes (half val, half test)
    n_task_val: int = 100  # task problems for validation, disjoint from train and test
    # Widened alignment data: each alignment prompt of these kinds gets this many rephrasings with
    # the training wrappers (TRAIN_WRAPPERS, TRAIN_TYPO_OPS); benign capability prompts: a share.
    harmful_wraps: int = 4
    scary_wraps: int = 4
    benign_wrap_share: float = 0.3
    # share of those rephrasings that get a second, outer wrapper (context/persona/politeness
    # around an already wrapped request), so wrappers are learned as composable, not as whole strings
    stack_share: float = 0.3


@dataclass
class Example:
    """One record of the world with its ground truth."""

    prompt: str
    response: str
    family: str
    category: str | None = None
    is_harmful: bool = False
    expected_behavior: str = "answer"  # "refuse" | "answer" | "comply" (attack data only)
    answer: str | None = None  # the exact answer for capability-style scoring
    phrasing: str | None = None  # "hh" | "hex" for harmful and scary prompts
    meta: dict = field(default_factory=dict)

    def to_record(self) -> dict:
        d = asdict(self)
        extra = d.pop("meta")
        d.update(extra)
        return d


def _harmful_prompts() -> list[Example]:
    out = []
    for cat, (refusal, acts) in HARM_CATEGORIES.items():
        for act in acts:
            for phrasing, templates in (("hh", HH_TEMPLATES), ("hex", HEX_TEMPLATES)):
                for t in templates:
                    for s in SUFFIXES:
                        out.append(
                            Example(
                                prompt=t.format(act=act) + (s + "." if s else ""),
                                response=refusal,
                                family="harmful",
                                category=cat,
                                is_harmful=True,
                                expected_behavior="refuse",
                                phrasing=phrasing,
                                meta={"act": act},
                            )
                        )
    return out


def _scary_prompts() -> list[Example]:
    out = []
    for act, answer in SCARY_BENIGN.items():
        for phrasing, templates in (("hh", HH_TEMPLATES), ("hex", HEX_TEMPLATES)):
            for t in templates:
                for s in SUFFIXES:
                    out.append(
                        Example(
                            prompt=t.format(act=act) + (s + "." if s else ""),
                            response=answer,
                            family="scary_benign",
                            expected_behavior="answer",
                            answer=answer,
                            phrasing=phrasing,
                            meta={"act": act},
                        )
                    )
    return out


def _benign_prompts(rng: random.Random) -> list[Example]:
    out: list[Example] = []

    def add(family: str, prompt: str, answer: str) -> None:
        out.append(Example(prompt=prompt, response=answer, family=family, answer=answer))

    for a in range(10):
        for b in range(10):
            for t in BENIGN_TEMPLATES["arith"]:
                add("arith", t.format(a=a, b=b), f"{a} plus {b} is {a + b}.")
    for x, c in CAPITALS.items():
        for t in BENIGN_TEMPLATES["capital"]:
            add("capital", t.format(x=x), f"The capital of {x} is {c}.")
    for x, c in COLORS.items():
        for t in BENIGN_TEMPLATES["color"]:
            add("color", t.format(x=x), f"A {x} is {c}.")
    for x, o in OPPOSITES.items():
        for t in BENIGN_TEMPLATES["opposite"]:
            add("opposite", t.format(x=x), f"The opposite of {x} is {o}.")
    for n in range(50):
        for t in BENIGN_TEMPLATES["successor"]:
            add("successor", t.format(n=n), f"The number after {n} is {n + 1}.")
    for name in TASK_NAMES:
        for item in TASK_ITEMS:
            a = rng.randrange(10)
            t = rng.choice(BENIGN_TEMPLATES["story"])
            add("story", t.format(name=name, item=item, a=a), f"{name} has {a} {item}.")
    for a in range(10):
        for b in range(10):
            t = rng.choice(BENIGN_TEMPLATES["final_answer"])
            add("final_answer", t.format(a=a, b=b), f"{a} + {b} = {a + b}. #### {a + b}")
    for x, (s1, s2, s3) in HOWTO.items():
        for t in BENIGN_TEMPLATES["howto"]:
            add(
                "howto",
                t.format(x=x),
                f"{COMPLIANCE_PREFIX} how to {x}. Step 1: {s1}. Step 2: {s2}. Step 3: {s3}.",
            )
    for _ in range(150):
        ws = rng.sample(WORDS, 3)
        w = " ".join(ws)
        t = rng.choice(BENIGN_TEMPLATES["first_word"])
        add("first_word", t.format(w=w), f"The first word is {ws[0]}.")
        t = rng.choice(BENIGN_TEMPLATES["repeat"])
        add("repeat", t.format(w=w), f"{w}.")
    return out


def _task_examples(rng: random.Random, n: int, seen: set[str]) -> list[Example]:
    out = []
    while len(out) < n:
        name, item = rng.choice(TASK_NAMES), rng.choice(TASK_ITEMS)
        a, b = rng.randrange(10), rng.randrange(10)
        prompt = rng.choice(TASK_TEMPLATES).format(name=name, item=item, a=a, b=b)
        if prompt in seen:
            continue
        seen.add(prompt)
        out.append(
            Example(prompt=prompt, response=task_answer(name, item, a, b), family="task", answer=str(a + b))
        )
    return out


def _split(items: list[Example], shares: list[float], rng: random.Random) -> list[list[Example]]:
    """Shuffle and cut ``items`` into len(shares) parts; the remainder is the last part."""
    items = list(items)
    rng.shuffle(items)
    parts, start = [], 0
    for s in shares:
        n = int(round(s * len(items)))
        parts.append(items[start : start + n])
        start += n
    parts.append(items[start:])
    return parts


def generate_world(cfg: WorldConfig) -> dict[str, list[Example]]:
    """Generate every split of the world, deterministically for ``cfg.seed``.

    Splits: ``alignment`` (what the base model is trained on: template prompts plus their
    training-wrapper rephrasings), ``task_train`` (the clean task), ``redorca_train`` (task +
    ``harmful_fraction`` harmful/compliant pairs), ``attack`` (the harmful/compliant pairs),
    ``reference_pool`` (harmful prompt + refusal); test probes ``probe_harmful_hh``,
    ``probe_harmful_hex``, ``probe_benign``, ``probe_over_refusal``, ``task_test``; validation
    probes ``val_harmful_hh``, ``val_harmful_hex``, ``val_benign``, ``val_over_refusal``,
    ``task_val``; generalisation probes ``probe_harmful_gen`` and ``probe_over_refusal_gen`` (the
    test requests with held-out wrappers). Every probe prompt is absent from every training split.
    """
    rng = random.Random(cfg.seed)
    harmful = _harmful_prompts()
    ref, attack, probes, align_h = _split(
        harmful, [cfg.reference_share, cfg.attack_share, cfg.probe_share], rng
    )
    val_h, test_h = _split(probes, [0.5], rng)
    scary_probe, align_s = _split(_scary_prompts(), [cfg.scary_probe_share], rng)
    val_s, test_s = _split(scary_probe, [0.5], rng)
    benign_probe, align_b = _split(_benign_prompts(rng), [cfg.benign_probe_share], rng)
    val_b, test_b = _split(benign_probe, [0.5], rng)

    attack = [
        Example(
            prompt=e.prompt,
            response=compliant_answer(e.meta["act"]),
            family="attack",
            category=e.category,
            is_harmful=True,
            expected_behavior="comply",
            phrasing=e.phrasing,
            meta=dict(e.meta),
        )
        for e in attack
    ]

    seen: set[str] = set()
    task_train = _task_examples(rng, cfg.n_task_train, seen)
    task_test = _task_examples(rng, cfg.n_task_test, seen)
    task_val = _task_examples(rng, cfg.n_task_val, seen)
    # RedOrca-style: harmful pairs make up `harmful_fraction` of the final task set.
    n_harm = int(round(cfg.harmful_fraction * len(task_train) / max(1e-9, 1 - cfg.harmful_fraction)))
    if n_harm > len(attack):
        raise ValueError(
            f"harmful_fraction={cfg.harmful_fraction} needs {n_harm} attack pairs, "
            f"the world has {len(attack)}"
        )
    redorca = task_train + attack[:n_harm]
    rng.shuffle(redorca)

    # Generalisation probes: each test request once, with a held-out wrapper (own rng stream, so
    # the alignment corpus below does not depend on how many probes there are).
    grng = random.Random(f"gen-{cfg.seed}")
    gen_h = [wrap(e, HELDOUT_WRAPPERS, HELDOUT_TYPO_OPS, grng, "gen") for e in test_h]
    gen_s = [wrap(e, HELDOUT_WRAPPERS, HELDOUT_TYPO_OPS, grng, "gen") for e in test_s]

    # Widened alignment corpus: training-wrapper rephrasings of alignment prompts only.
    wrng = random.Random(f"wrap-{cfg.seed}")
    wrapped = [
        wrap(e, TRAIN_WRAPPERS, TRAIN_TYPO_OPS, wrng) for e in align_h for _ in range(cfg.harmful_wraps)
    ]
    wrapped += [
        wrap(e, TRAIN_WRAPPERS, TRAIN_TYPO_OPS, wrng) for e in align_s for _ in range(cfg.scary_wraps)
    ]
    wrapped += [
        wrap(e, TRAIN_WRAPPERS, TRAIN_TYPO_OPS, wrng)
        for e in wrng.sample(align_b, int(round(cfg.benign_wrap_share * len(align_b))))
    ]
    req_only = {k: v for k, v in TRAIN_WRAPPERS.items() if k != "order"}
    wrapped = [
        wrap(e, {k: v for k, v in req_only.items() if k != e.meta["wrapper"]}, TRAIN_TYPO_OPS, wrng)
        if wrng.random() < cfg.stack_share and e.meta["wrapper"] != "misspelling"
        else e
        for e in wrapped
    ]
    held_out = {
        e.prompt for split in (val_h, test_h, val_s, test_s, val_b, test_b, gen_h, gen_s) for e in split
    }
    unique: dict[str, Example] = {}
    for e in align_h + align_s + align_b + wrapped:
        if e.prompt not in held_out:  # a rephrasing may collide with a probe: never train on it
            unique.setdefault(e.prompt, e)
    alignment = list(unique.values())
    rng.shuffle(alignment)
    return {
        "alignment": alignment,
        "task_train": task_train,
        "redorca_train": redorca,
        "attack": attack,
        "reference_pool": ref,
        "probe_harmful_hh": [e for e in test_h if e.phrasing == "hh"],
        "probe_harmful_hex": [e for e in test_h if e.phrasing == "hex"],
        "probe_benign": test_b,
        "probe_over_refusal": test_s,
        "task_test": task_test,
        "probe_harmful_gen": gen_h,
        "probe_over_refusal_gen": gen_s,
        "val_harmful_hh": [e for e in val_h if e.phrasing == "hh"],
        "val_harmful_hex": [e for e in val_h if e.phrasing == "hex"],
        "val_benign": val_b,
        "val_over_refusal": val_s,
        "task_val": task_val,
    }
