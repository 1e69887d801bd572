"""Hand-written prompt lists and refusal templates of the aligned real base, read from the package
data file ``prompts.yaml`` next to this module (comments there say what each list is for).

``BENIGN_PROMPTS``: ordinary requests and contrast prompts answered by the shipped model itself
(capability preservation during alignment). ``REFUSALS``: the refusal templates the base is trained
to give. ``CONTRAST_PROMPTS``: harmless senses of charged words (the acts phrased with rotating
question frames, then the questions). ``CALIBRATION_SAFE_PROMPTS``: validation prompts of the
alignment-strength calibration, never trained on. ``HELPFUL_PROMPTS``: the helpfulness pool's
benign look-alike requests. None is copied from XSTest (an evaluation set here); exact overlaps by
normalised text are checked and excluded in :mod:`dualselect.realbase.data`.
"""

from __future__ import annotations

from pathlib import Path

from dualselect.utils import ConfigError, read_yaml

PROMPTS_FILE = Path(__file__).with_name("prompts.yaml")
CALIBRATION_KINDS = (
    "homonyms",
    "figurative",
    "safe_targets",
    "safe_contexts",
    "definitions",
    "real_group_nonsense",
    "nonsense_group",
    "history",
    "privacy_public",
    "privacy_fictional",
)
CONTRAST_ACTS = ("safe_acts", "figurative", "safe_contexts")


def _strings(path: str | Path, data: dict, key: str, where: str = "") -> tuple[str, ...]:
    v = data.get(key)
    if not isinstance(v, list) or not v or not all(isinstance(s, str) and s for s in v):
        raise ConfigError(f"{path}: {where}{key}: a non-empty list of non-empty strings")
    return tuple(v)


def load_prompts(path: str | Path = PROMPTS_FILE) -> dict[str, tuple[str, ...]]:
    """The five lists of ``path`` (default: the shipped ``prompts.yaml``), by constant name."""
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of prompt lists")
    contrast, calib = data.get("contrast"), data.get("calibration_safe")
    if not isinstance(contrast, dict) or not isinstance(calib, dict):
        raise ConfigError(f"{path}: 'contrast' and 'calibration_safe' must be mappings of lists")
    frames = _strings(path, contrast, "frames", "contrast.")
    acts = sum((_strings(path, contrast, k, "contrast.") for k in CONTRAST_ACTS), ())
    # rotate the question frames so no frame carries the answer-or-refuse decision
    contrast_prompts = tuple(frames[i % len(frames)].format(a) for i, a in enumerate(acts))
    return {
        "BENIGN_PROMPTS": _strings(path, data, "benign"),
        "REFUSALS": _strings(path, data, "refusals"),
        "CONTRAST_PROMPTS": contrast_prompts + _strings(path, contrast, "questions", "contrast."),
        "CALIBRATION_SAFE_PROMPTS": sum(
            (_strings(path, calib, k, "calibration_safe.") for k in CALIBRATION_KINDS), ()
        ),
        "HELPFUL_PROMPTS": _strings(path, data, "helpful"),
    }


_LISTS = load_prompts()
BENIGN_PROMPTS: tuple[str, ...] = _LISTS["BENIGN_PROMPTS"]
REFUSALS: tuple[str, ...] = _LISTS["REFUSALS"]
CONTRAST_PROMPTS: tuple[str, ...] = _LISTS["CONTRAST_PROMPTS"]
CALIBRATION_SAFE_PROMPTS: tuple[str, ...] = _LISTS["CALIBRATION_SAFE_PROMPTS"]
HELPFUL_PROMPTS: tuple[str, ...] = _LISTS["HELPFUL_PROMPTS"]
