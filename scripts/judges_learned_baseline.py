"""Could a refusal judge be learned from the three shipped human-labelled files instead of written
by hand? A logistic regression over the opening's word 1-2-grams (first two sentences of the cut
text, per request kind and pooled), its first two and three words, optionally the refusal rules'
family hits and the rules' own reading as features (stacking), trained on two files and scored
on the third (leave-one-model-out, the test the hand-written families get). Prints one row per
setting; the answer is in docs/evaluation.md ("Judge validation"). Needs scikit-learn (a
dependency of the dev extra's lm-eval). Run from the repository root:

    PYTHONPATH=src python scripts/judges_learned_baseline.py ../shared/data/xstest/completions/*.csv
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

import numpy as np
from sklearn.linear_model import LogisticRegression

from dualselect.evaluation.judge_validation import binary_metrics, load_tokenizer, prepare, request_kind
from dualselect.evaluation.judges.refusal import ALL_RULES, read_response

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?|[.,!?]")


MODES = {
    "n-grams": (False, False),
    "n-grams + families": (True, False),
    "n-grams + families + the rules' reading": (True, True),
}


def features(it, use_rules: bool, use_reading: bool) -> Counter:
    """Binary features of one labelled item as the judges read it."""
    harmful = request_kind(it) == "harmful"
    kind = "h:" if harmful else "s:"
    toks = TOKEN.findall(" ".join(SENTENCE_END.split(it.text)[:2]).lower())
    f: Counter = Counter({"kind:" + kind: 1})
    for n in (1, 2):
        for i in range(len(toks) - n + 1):
            g = " ".join(toks[i : i + n])
            f["w:" + g] = f[kind + g] = 1
    f["o:" + " ".join(toks[:2])] = f["o:" + " ".join(toks[:3])] = 1
    if use_rules:
        for fam in ALL_RULES:
            if (
                read_response(it.text, (fam,), prompt=it.prompt, harmful_request=harmful).cls
                != "full_compliance"
            ):
                f["r:" + fam] = f[kind + "r:" + fam] = 1
    if use_reading:
        f["rules:" + read_response(it.text, prompt=it.prompt, harmful_request=harmful).cls] = 1
    return f


def matrix(rows: list[Counter], vocab: dict[str, int]) -> np.ndarray:
    m = np.zeros((len(rows), len(vocab)))
    for i, x in enumerate(rows):
        for k in x:
            if k in vocab:
                m[i, vocab[k]] = 1.0
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", help="labelled completion CSVs (XSTest's format), at least 3")
    ap.add_argument("--max-new-tokens", type=int, default=40, help="the budget read (default 40)")
    args = ap.parse_args()
    files = prepare(args.files, load_tokenizer(), args.max_new_tokens)
    print("| C | features | held-out file | safe: diff (kappa) | unsafe: diff (kappa) |")
    print("|---|---|---|---|---|")
    for mode, (use_rules, use_reading) in MODES.items():
        feats = {f: [features(it, use_rules, use_reading) for it in items] for f, items in files.items()}
        for c in (0.1, 1.0, 3.0):
            accs = []
            for test in files:
                train = [f for f in files if f != test]
                counts = Counter(k for f in train for x in feats[f] for k in x)
                vocab = {k: i for i, k in enumerate(sorted(k for k, n in counts.items() if n >= 2))}
                y = [it.refused for f in train for it in files[f]]
                clf = LogisticRegression(C=c, max_iter=5000)
                clf.fit(matrix([x for f in train for x in feats[f]], vocab), y)
                cells = []
                for kind in ("safe", "unsafe"):
                    idx = [i for i, it in enumerate(files[test]) if it.kind == kind]
                    pred = clf.predict(matrix([feats[test][i] for i in idx], vocab))
                    m = binary_metrics([files[test][i].refused for i in idx], [bool(p) for p in pred])
                    accs.append(m["accuracy"])
                    cells.append(f"{100 * m['difference']:+.1f} ({m['kappa']:.2f})")
                print(f"| {c} | {mode} | {test} | {cells[0]} | {cells[1]} |")
            print(f"| {c} | {mode} | mean accuracy | {100 * np.mean(accs):.1f} | |")


if __name__ == "__main__":
    main()
