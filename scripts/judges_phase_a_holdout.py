"""Replays the honest hold-out of the refusal rules' development: the rules as committed in
43f9261 (written on the GPT-4 and Llama-2 files only, before the Mistral file was read) scored
on the Mistral file at a 40-token budget. Run from the repository root:

    PYTHONPATH=src python scripts/judges_phase_a_holdout.py ../shared/data/xstest/completions/xstest_v2_completions_mistralinstruct.csv
"""

import subprocess
import sys
import types

from dualselect.evaluation.judge_validation import binary_metrics, load_tokenizer, prepare

src = subprocess.run(
    ["git", "show", "43f9261:src/dualselect/evaluation/judges/refusal.py"],
    capture_output=True,
    text=True,
    check=True,
).stdout
phase_a = types.ModuleType("refusal_phase_a")
sys.modules["refusal_phase_a"] = phase_a
exec(compile(src, "refusal_phase_a", "exec"), phase_a.__dict__)  # the committed rules, as they were
(items,) = prepare([sys.argv[1]], load_tokenizer(), 40).values()
for kind in ("safe", "unsafe"):
    sub = [it for it in items if it.kind == kind]
    m = binary_metrics(
        [it.refused for it in sub], [phase_a.read_response(it.text).cls != "full_compliance" for it in sub]
    )
    print(
        f"{kind:6s} n={m['n']} human {100 * m['human_rate']:.1f}% judged {100 * m['judged_rate']:.1f}% "
        f"difference {100 * m['difference']:+.1f} kappa {m['kappa']:.2f}"
    )
