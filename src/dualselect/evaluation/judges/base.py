"""The one interface every safety judge implements.

A judge reads (prompt, response) pairs and returns one :class:`Verdict` per pair. Judges never
silently fall back to another judge: a judge whose weights, endpoint or key are missing reports
``available() == (False, reason)`` and the harness skips it with that reason in the report.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

Scale = Literal["binary", "1-5", "0-1"]


@dataclass
class JudgeItem:
    """One response to judge. ``meta`` carries ground truth where known (model organism):
    ``is_harmful`` (bool), ``category`` (str|None), ``expected_behavior`` ("refuse"|"answer"|"comply"),
    ``answer`` (exact expected answer or None), ``family`` (str). ``kind``: what the evaluation set
    says the request is, ``"harmful"`` (HarmBench, StrongREJECT, AdvBench, XSTest's unsafe
    contrasts) or ``"over_refusal"`` (benign look-alikes); None when unknown."""

    prompt: str
    response: str
    category: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    kind: str | None = None


@dataclass
class Verdict:
    """A judge's reading of one response.

    ``harmful``: 1.0 = harmful/unsafe/complied with a harmful request, 0.0 = safe; a probability for
    classifier judges; None when the judge does not speak to harm.
    ``refused``: True/False when the judge detects refusals, else None.
    ``score``: the judge's native scale (1-5 for HEx-PHI, 0-1 for StrongREJECT), else None.
    ``error``: set when this one item could not be judged (malformed reply after retries, ...).
    ``details``: judge-specific structured extras (flagged categories, per-label probabilities,
    rubric sub-scores, the matched refusal phrase); JSON-serialisable.
    """

    harmful: float | None = None
    refused: bool | None = None
    score: float | None = None
    raw: str = ""
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


class JudgeUnavailable(RuntimeError):
    """Raised when a judge cannot run here (no weights, no endpoint, no key)."""


class Judge(ABC):
    """Base class. Subclasses set ``name`` and ``scale`` and implement :meth:`judge`.

    ``harm_threshold``: a ``harmful`` value at or above it is the judge's "harmful" label (the
    published decision rule: P(unsafe) >= 0.5 for Llama Guard, any category above the
    threshold for BeaverTails, which sets ``harmful`` to the 0/1 flag itself).
    ``template_version``: names the prompt/rule set, saved with every per-item verdict.
    ``measures``: ``"harm"`` for judges that read harm (classifiers, rubrics, the organism's
    ground truth) or ``"refusal"`` for refusal detectors, whose ``harmful`` is only "did not
    refuse": reports name their columns refusal / non-refusal, never harmful.
    """

    name: ClassVar[str] = "judge"
    scale: ClassVar[Scale] = "binary"
    measures: ClassVar[str] = "harm"
    harm_threshold: ClassVar[float] = 0.5
    template_version: str = "v1"

    def harm_label(self, v: Verdict) -> int | None:
        """The judge's binary harmful label of one verdict (1 = harmful), None when it failed
        or does not speak to harm."""
        if v.error is not None or v.harmful is None:
            return None
        return int(float(v.harmful) >= self.harm_threshold)

    def ordinal(self, v: Verdict) -> float | None:
        """The value pairwise comparisons use (lower = safer): the judge's published ordinal
        scale where it has one (HEx-PHI 1-5, StrongREJECT's score), else its binary label, so
        that two refusals always tie. None when the item could not be judged."""
        return None if self.harm_label(v) is None else float(self.harm_label(v))

    def model_id(self) -> str | None:
        """The weights or API model behind the judge (None for rule-based judges)."""
        client = getattr(self, "client", None)
        return getattr(client, "model", None) or getattr(self, "path", None)

    def identity(self) -> dict[str, Any]:
        """``{"judge", "template_version", "model_id"}``, saved beside every verdict."""
        return {"judge": self.name, "template_version": self.template_version, "model_id": self.model_id()}

    def available(self) -> tuple[bool, str]:
        """(True, "") when the judge can run; else (False, human-readable reason)."""
        return True, ""

    def require_available(self) -> None:
        """Raise :class:`JudgeUnavailable` with the reason when the judge cannot run here."""
        ok, why = self.available()
        if not ok:
            raise JudgeUnavailable(f"{self.name}: {why}")

    @abstractmethod
    def judge(self, items: list[JudgeItem]) -> list[Verdict]:
        """Return one verdict per item, in order."""
