"""Where the organism's helpfulness pool lives (the files two-sided DualSelect reads).

The pool (benign requests that look harmful, answered by the organism itself) is built by
:func:`dualselect.experiments.helpful_pool.build_helpful_pool`, which generates the answers. Files
(in ``<organism>/helpful/``, outside ``data/`` so the shipped organism's checksums hold):

* ``helpful_pool.jsonl``: ``{prompt, response, act}``, ``response`` the base model's own greedy
  answer; prompts it refuses are left out and counted;
* ``helpful_refusals.jsonl``: the same prompts with a refusal, for the ``refusal_penalty`` and ``unlikelihood`` objectives;
* ``disjointness.json``: overlaps with every probe split (all zero, or the build fails); written
  last, so its presence marks a complete pool.
"""

from __future__ import annotations

import os
from pathlib import Path

from dualselect.data.records import helpful_pool_file
from dualselect.organism.vocabulary import REFUSAL_PREFIX

HELPFUL_DIR = "helpful"
DONE_FILE = "disjointness.json"
# the refusal the refusal_penalty objective pushes down: the world's refusal prefix (what the
# probes count as a refusal) with a generic ending
HELPFUL_REFUSAL = f"{REFUSAL_PREFIX} with that."


def helpful_path(organism: str | os.PathLike, objective: str = "preserve") -> Path:
    """The pool file an objective reads (``preserve``: the answers; the refusal objectives: refusals)."""
    return Path(organism) / HELPFUL_DIR / helpful_pool_file(objective)
