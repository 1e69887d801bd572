"""The prompt lists read from ``realbase/prompts.yaml`` are byte for byte the lists the committed
real bases were built from (their sha256 pinned here was computed from the Python literals they
replaced), and a malformed file is refused with a one-line error naming it."""

from __future__ import annotations

import hashlib
import json

import pytest

from dualselect.realbase import prompts
from dualselect.utils import ConfigError, read_yaml

PINNED = {  # name: (length, sha256[:16] of json.dumps(list, ensure_ascii=False))
    "BENIGN_PROMPTS": (206, "fdef7f24495e2c99"),
    "REFUSALS": (6, "28d77d76c8929a88"),
    "CONTRAST_PROMPTS": (154, "d2ef0d40bd5aff2d"),
    "CALIBRATION_SAFE_PROMPTS": (110, "57c99f4b22c9aa1c"),
    "HELPFUL_PROMPTS": (48, "7f2a9e392ac18da1"),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_lists_are_unchanged(name):
    lst = list(getattr(prompts, name))
    digest = hashlib.sha256(json.dumps(lst, ensure_ascii=False).encode()).hexdigest()[:16]
    assert (len(lst), digest) == PINNED[name]
    assert all(type(s) is str and s == s.strip() for s in lst)


def test_contrast_prompts_rotate_the_question_frames():
    c = read_yaml(prompts.PROMPTS_FILE)["contrast"]
    acts = c["safe_acts"] + c["figurative"] + c["safe_contexts"]
    assert len(c["frames"]) == 4 and len(prompts.CONTRAST_PROMPTS) == len(acts) + len(c["questions"])
    assert prompts.CONTRAST_PROMPTS[5] == c["frames"][1].format(acts[5])
    assert prompts.CONTRAST_PROMPTS[-1] == c["questions"][-1]


def test_a_malformed_prompt_file_is_named(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("benign: [a]\nrefusals: []\ncontrast: {}\ncalibration_safe: {}\nhelpful: [b]\n")
    with pytest.raises(ConfigError, match="contrast"):
        prompts.load_prompts(bad)
    good = prompts.PROMPTS_FILE.read_text().replace('refusals:\n  - "', 'refusals:\n  - 3\n  - "', 1)
    bad.write_text(good)
    with pytest.raises(ConfigError, match=r"p\.yaml: refusals: a non-empty list"):
        prompts.load_prompts(bad)
