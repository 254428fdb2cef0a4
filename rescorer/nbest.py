"""The N-best data model: utterances, each with its hypotheses and their scores.

Scores are natural-log, higher is better (DESIGN.md section 2): `am_score` (acoustic, or
whatever the first pass calls its non-LM score), `lm_score` (first-pass LM, optional), and any
other named scores kept as they came (`scores`). Readers keep the decoder's order, so the
first hypothesis of a list is the first-pass 1-best.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


class NbestError(ValueError):
    """Malformed N-best input; the message names the source, where, what and what was expected."""


@dataclass
class Hypothesis:
    text: str  # words separated by single spaces; "" is the empty hypothesis
    am_score: float
    lm_score: float | None = None
    scores: dict[str, float] = field(default_factory=dict)  # other named scores, natural log
    extra: dict[str, Any] = field(default_factory=dict)  # non-score fields, carried through

    @property
    def words(self) -> list[str]:
        return self.text.split()


@dataclass
class Utterance:
    utt_id: str
    hyps: list[Hypothesis]
    ref: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def normalize_text(text: str) -> str:
    return " ".join(text.split())


def check_utterance(utt: Utterance, where: str) -> Utterance:
    """Reject what no rescoring can use: no hypotheses, non-finite scores, and first-pass LM
    "log-probabilities" above zero, which are costs or log10 values given in the wrong field."""
    if not utt.hyps:
        raise NbestError(f"{where}: utterance {utt.utt_id!r} has no hypotheses (expected at least one)")
    for n, hyp in enumerate(utt.hyps, start=1):
        values = {"am_score": hyp.am_score, "lm_score": hyp.lm_score, **hyp.scores}
        for name, value in values.items():
            if value is not None and not math.isfinite(value):
                raise NbestError(
                    f"{where}: utterance {utt.utt_id!r} hypothesis {n}: {name} is {value}"
                    " (expected a finite natural-log score)"
                )
        if hyp.lm_score is not None and hyp.lm_score > 1e-6:
            raise NbestError(
                f"{where}: utterance {utt.utt_id!r} hypothesis {n}: lm_score {hyp.lm_score} is positive, but a"
                " log-probability is at most 0 (a cost? negate it; Kaldi archives are read as costs by --format kaldi)"
            )
    return utt


def parse_score(value: Any, name: str, where: str) -> float:
    """A finite float from a JSON number (or a numeric string); an error names field and place."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise NbestError(f"{where}: {name} must be a number, found {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise NbestError(f"{where}: {name} must be a number, found {value!r}") from None
    if not math.isfinite(number):
        raise NbestError(f"{where}: {name} is {value!r} (expected a finite natural-log score)")
    return number
