"""How named first-pass scores become `am_score` and `lm_score`.

A mapping is written like `am=0.6*decoder+0.4*ctc,lm=lm`. The LibriSpeech ESPnet 30-best
lists carry `decoder`, `ctc` and `lm` (all natural log; `lm` summed over BPE tokens); their
documented mapping is LIBRISPEECH_ESPNET. A record that already has `am_score` needs none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rescorer.nbest import NbestError

_NUMBER = r"\d*\.?\d+(?:[eE][-+]?\d+)?"
_TERM = re.compile(rf"\s*([-+]?)\s*(?:({_NUMBER})\s*\*\s*)?([A-Za-z_][\w]*)\s*")


@dataclass(frozen=True)
class ScoreMapping:
    am: tuple[tuple[str, float], ...]  # am_score = sum of weight * named score
    lm: tuple[tuple[str, float], ...] = ()  # empty: no first-pass LM score

    @property
    def names(self) -> set[str]:
        return {name for name, _ in self.am + self.lm}

    def apply(self, scores: dict[str, float], where: str) -> tuple[float, float | None]:
        """(am_score, lm_score) from a hypothesis's named scores; an error names what is missing."""
        missing = sorted(self.names - set(scores))
        if missing:
            raise NbestError(f"{where}: score mapping {self.to_text()!r} needs {missing}, found {sorted(scores)}")
        am = sum(w * scores[n] for n, w in self.am)
        lm = sum(w * scores[n] for n, w in self.lm) if self.lm else None
        return am, lm

    def to_text(self) -> str:
        def side(terms):
            return "+".join(f"{w:g}*{n}" for n, w in terms)
        return f"am={side(self.am)}" + (f",lm={side(self.lm)}" if self.lm else "")


def _parse_sum(text: str, spec: str) -> tuple[tuple[str, float], ...]:
    """`0.6*decoder+0.4*ctc` -> (("decoder", 0.6), ("ctc", 0.4)); `a-b` -> (("a", 1), ("b", -1))."""
    terms, position = [], 0
    while position < len(text):
        match = _TERM.match(text, position)
        if not match or (terms and not match.group(1)):
            raise NbestError(
                f"score mapping {spec!r}: cannot read {text[position:]!r} (expected terms WEIGHT*NAME joined by + or -)"
            )
        sign = -1.0 if match.group(1) == "-" else 1.0
        terms.append((match.group(3), sign * (float(match.group(2)) if match.group(2) else 1.0)))
        position = match.end()
    return tuple(terms)


def parse_score_mapping(spec: str) -> ScoreMapping:
    """`am=0.6*decoder+0.4*ctc,lm=lm` -> ScoreMapping."""
    sides: dict[str, str] = {}
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        if not sep or key.strip() not in ("am", "lm"):
            raise NbestError(f"score mapping {spec!r}: expected 'am=...' and optionally ',lm=...', found {item!r}")
        sides[key.strip()] = value.strip()
    if "am" not in sides:
        raise NbestError(f"score mapping {spec!r}: the 'am=' part is required")
    return ScoreMapping(_parse_sum(sides["am"], spec), _parse_sum(sides.get("lm", ""), spec))


LIBRISPEECH_ESPNET = ScoreMapping(am=(("decoder", 0.6), ("ctc", 0.4)), lm=(("lm", 1.0),))
