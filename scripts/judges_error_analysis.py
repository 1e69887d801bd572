"""Lists every item where ``refusal_rules`` disagrees with XSTest's human label at a token
budget, for reading by hand (docs/evaluation.md, "Judge validation", error analysis): the id,
prompt kind and type, the human class, the rules' class with the rule that fired and its text,
the rules' class on the same completion cut to 256 tokens and uncut, the prompt, the cut text
and what follows the cut. Run from the repository root:

    PYTHONPATH=src python scripts/judges_error_analysis.py ../shared/data/xstest/completions/*.csv
    PYTHONPATH=src python scripts/judges_error_analysis.py FILE --max-new-tokens 40 --after 300
"""

import argparse

from dualselect.evaluation.judge_validation import load_tokenizer, prepare, request_kind
from dualselect.evaluation.judges.refusal import read_response

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("files", nargs="+", help="labelled completion CSVs (XSTest's format)")
ap.add_argument("--max-new-tokens", type=int, default=40, help="the budget read (default 40)")
ap.add_argument("--after", type=int, default=300, help="characters shown after the cut (default 300)")
args = ap.parse_args()

tok = load_tokenizer()
cut = prepare(args.files, tok, args.max_new_tokens)
longer = prepare(args.files, tok, 256)
whole = prepare(args.files, tok, 0)
for f, items in cut.items():
    rows = []
    for it, it256, itall in zip(items, longer[f], whole[f]):
        # as the judge reads it: the premise-rejection family only on harmful requests
        harmful = request_kind(it) == "harmful"
        r = read_response(it.text, prompt=it.prompt, harmful_request=harmful)
        if (r.cls != "full_compliance") == it.refused:
            continue
        r256 = read_response(it256.text, prompt=it.prompt, harmful_request=harmful).cls
        rall = read_response(itall.text, prompt=it.prompt, harmful_request=harmful).cls
        rows.append(
            f"### {it.id} ({it.kind}, {it.type})\n"
            f"human {it.label}; rules {r.cls} ({r.evidence}: {r.span!r}); at 256 tokens {r256}; uncut {rall}\n"
            f"prompt: {it.prompt}\n"
            f"cut:    {it.text!r}\n"
            f"after:  {itall.text[len(it.text) : len(it.text) + args.after]!r}\n"
        )
    print(f"## {f}: {len(rows)} disagreements of {len(items)} at {args.max_new_tokens} tokens\n")
    print("\n".join(rows))
