"""The N-best data model: utterances, each with its hypotheses and their scores.

Scores are natural-log, higher is better (docs/ARCHITECTURE.md, section 2): `am_score` (acoustic, or
whatever the first pass calls its non-LM score), `lm_score` (first-pass LM, optional), and any
other named scores kept as they came (`scores`). Readers keep the decoder's order, so the
first hypothesis of a list is the first-pass 1-best.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from rescorer.errors import InputError
from rescorer.words import join_words, split_words


class NbestError(InputError):
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
        return split_words(self.text)


@dataclass
class Utterance:
    utt_id: str
    hyps: list[Hypothesis]
    ref: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def normalize_text(text: str) -> str:
    return join_words(text)


MAX_SCORE = 1e9  # |score| accepted: far beyond any real log-probability, far below float overflow


def check_utterance(utt: Utterance, where: str) -> Utterance:
    """Reject what no rescoring can use: no hypotheses, scores that are not finite or beyond
    +-MAX_SCORE (with weights within +-1e6 every total stays finite), a named score that some
    hypotheses of the list have and others lack (a missing lm_score must not count as 0, a
    perfect log-probability), and first-pass LM "log-probabilities" above zero, which are costs
    or log10 values given in the wrong field."""
    if not utt.hyps:
        raise NbestError(f"{where}: utterance {utt.utt_id!r} has no hypotheses (expected at least one)")
    counts: dict[str, int] = {}
    for n, hyp in enumerate(utt.hyps, start=1):
        values = {"am_score": hyp.am_score, "lm_score": hyp.lm_score, **hyp.scores}
        for name, value in values.items():
            if value is None:
                continue
            counts[name] = counts.get(name, 0) + 1
            if not math.isfinite(value) or abs(value) > MAX_SCORE:
                raise NbestError(
                    f"{where}: utterance {utt.utt_id!r} hypothesis {n}: {name} is {value}"
                    f" (expected a finite natural-log score within +-{MAX_SCORE:g})"
                )
        if hyp.lm_score is not None and hyp.lm_score > 1e-6:
            raise NbestError(
                f"{where}: utterance {utt.utt_id!r} hypothesis {n}: lm_score {hyp.lm_score} is positive, but a"
                " log-probability is at most 0 (a cost? negate it; Kaldi archives are read as costs by --format kaldi)"
            )
    partial = {name: count for name, count in counts.items() if count != len(utt.hyps)}
    if partial:
        name, count = next(iter(partial.items()))
        raise NbestError(
            f"{where}: utterance {utt.utt_id!r}: {name} given for {count} of {len(utt.hyps)} hypotheses"
            " (a list has each score for every hypothesis or for none)"
        )
    return utt


def parse_score(value: Any, name: str, where: str, strict: bool = False) -> float:
    """A finite float from a JSON number (`strict`: numbers only, as JSON readers want) or a
    numeric string (text formats); an error names the field and the place."""
    allowed = (int, float) if strict else (int, float, str)
    if isinstance(value, bool) or not isinstance(value, allowed):
        raise NbestError(f"{where}: {name} must be a number, found {value!r}")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise NbestError(f"{where}: {name} must be a number, found {value!r:.80}") from None
    if not math.isfinite(number):
        raise NbestError(f"{where}: {name} is {value!r:.80} (expected a finite natural-log score)")
    return number
