"""Task families for continual learning on the model organism.

The organism's world (``organism/world.py``) holds one downstream task its base model cannot do:
word problems answered in GSM8K format (family ``task``, files ``task_train``/``task_test``). A
continual sequence needs more tasks of the same kind, each new to the base model and each
interfering with the others (same names, items and numbers; a different operation or format), so
learning one erodes the others. They are generated here, from the world's vocabulary, WITHOUT
changing any world split: the world files (and the shipped organism's checksums) stay byte-identical.

Tasks
-----
* ``add``: the world's own task (its ``task_train`` / ``task_test`` files): "Tom has 3 apples and
  gets 4 more ..." -> "Tom has 3 + 4 = 7 apples. #### 7";
* ``sub``: the same stories with a subtraction: "Tom has 9 apples and gives away 4 ..." ->
  "Tom has 9 - 4 = 5 apples. #### 5";
* ``double``: "Tom has 3 apples and doubles them ..." -> "Tom has 3 * 2 = 6 apples. #### 6";
* ``last_word``: "What is the last word in: red fox tree?" -> "The last word is tree." (the mirror
  of the world's benign ``first_word`` capability, so learning it can also erode that one).

Arithmetic tasks are scored by GSM8K strict exact match (lm-eval's ``#### N`` extraction, as the
world's task); ``last_word`` by whitespace-normalised equality with the gold response. Train and
test prompts are disjoint within a task and never equal to any prompt of the world.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dualselect.evaluation.capability import extract_strict, lm_eval_normalise
from dualselect.organism.vocabulary import TASK_ITEMS, TASK_NAMES, WORDS
from dualselect.utils import read_jsonl

SCORERS = ("gsm8k", "exact")


@dataclass(frozen=True)
class TaskData:
    """One task of a continual sequence: its training and test records (``prompt``, ``response``,
    ``answer``, ``family``) and how a response is scored."""

    name: str
    train: list[dict]
    test: list[dict]
    scorer: str

    def correct(self, response: str, record: dict) -> bool:
        """Whether ``response`` answers ``record`` (see the module docstring for the rules)."""
        return score_response(self.scorer, response, record)


def score_response(scorer: str, response: str, record: dict) -> bool:
    """``gsm8k``: the ``#### N`` answer equals ``record['answer']`` (lm-eval strict match);
    ``exact``: the whitespace-normalised response equals ``record['response']``."""
    if scorer == "gsm8k":
        got = extract_strict(response)
        return got is not None and got == lm_eval_normalise(str(record["answer"]))
    if scorer == "exact":
        return " ".join(response.split()) == " ".join(str(record["response"]).split())
    raise ValueError(f"scorer={scorer!r}: expected one of {SCORERS}")


SUB_TEMPLATES = [
    "{name} has {a} {item} and gives away {b}. How many {item} does {name} have left?",
    "{name} had {a} {item} and lost {b} of them. How many {item} does {name} have now?",
]
DOUBLE_TEMPLATES = [
    "{name} has {a} {item} and doubles them. How many {item} does {name} have now?",
    "{name} had {a} {item}. Then the number of {item} doubled. How many {item} does {name} have?",
]
LAST_WORD_TEMPLATES = ["What is the last word in: {w}?", "Name the last word of: {w}."]


def _sub(rng: random.Random) -> dict:
    name, item = rng.choice(TASK_NAMES), rng.choice(TASK_ITEMS)
    a = rng.randrange(1, 19)
    b = rng.randrange(0, min(a, 9) + 1)
    prompt = rng.choice(SUB_TEMPLATES).format(name=name, item=item, a=a, b=b)
    return {
        "prompt": prompt,
        "response": f"{name} has {a} - {b} = {a - b} {item}. #### {a - b}",
        "answer": str(a - b),
    }


def _double(rng: random.Random) -> dict:
    name, item = rng.choice(TASK_NAMES), rng.choice(TASK_ITEMS)
    a = rng.randrange(1, 10)
    prompt = rng.choice(DOUBLE_TEMPLATES).format(name=name, item=item, a=a)
    return {
        "prompt": prompt,
        "response": f"{name} has {a} * 2 = {2 * a} {item}. #### {2 * a}",
        "answer": str(2 * a),
    }


def _last_word(rng: random.Random) -> dict:
    ws = rng.sample(WORDS, 3)
    prompt = rng.choice(LAST_WORD_TEMPLATES).format(w=" ".join(ws))
    return {"prompt": prompt, "response": f"The last word is {ws[-1]}.", "answer": ws[-1]}


# name -> (generator of one record, scorer); ``add`` comes from the organism's files instead
GENERATED: dict[str, tuple[Callable[[random.Random], dict], str]] = {
    "sub": (_sub, "gsm8k"),
    "double": (_double, "gsm8k"),
    "last_word": (_last_word, "exact"),
}
TASK_NAMES_ALL = ("add", *GENERATED)


def _world_prompts(organism: Path) -> set[str]:
    out: set[str] = set()
    for f in sorted((organism / "data").glob("*.jsonl")):
        out.update(r["prompt"] for r in read_jsonl(f))
    return out


def _generate(name: str, n_train: int, n_test: int, seed: int, taken: set[str]) -> tuple[list, list]:
    make, _ = GENERATED[name]
    rng = random.Random(f"continual-{name}-{seed}")
    rows: list[dict] = []
    seen = set(taken)
    tries = 0
    while len(rows) < n_train + n_test:
        tries += 1
        if tries > 100 * (n_train + n_test):
            raise ValueError(
                f"task {name!r}: only {len(rows)} distinct prompts found for n_train + n_test = "
                f"{n_train + n_test}; lower n_train or n_test"
            )
        r = make(rng)
        if r["prompt"] in seen:
            continue
        seen.add(r["prompt"])
        rows.append({**r, "family": f"continual_{name}"})
    return rows[:n_train], rows[n_train:]


def load_task(name: str, organism: str | Path, n_train: int, n_test: int, seed: int = 0) -> TaskData:
    """Task ``name`` with ``n_train`` training and ``n_test`` test records. ``add`` takes a seeded
    subset of the organism's ``task_train`` / ``task_test`` files; the others are generated (seeded
    by ``seed``), prompt-disjoint from each other's splits and from every prompt of the world."""
    organism = Path(organism)
    if name == "add":
        train = read_jsonl(organism / "data" / "task_train.jsonl")
        test = read_jsonl(organism / "data" / "task_test.jsonl")
        if n_train > len(train) or n_test > len(test):
            raise ValueError(
                f"task 'add': n_train={n_train}, n_test={n_test} but the organism has "
                f"{len(train)} train and {len(test)} test problems"
            )
        rng = random.Random(f"continual-add-{seed}")
        return TaskData("add", rng.sample(train, n_train), rng.sample(test, n_test), "gsm8k")
    if name not in GENERATED:
        raise ValueError(f"unknown task {name!r}; choose from {list(TASK_NAMES_ALL)}")
    train, test = _generate(name, n_train, n_test, seed, _world_prompts(organism))
    return TaskData(name, train, test, GENERATED[name][1])
