"""Combining scores and picking the best hypothesis (docs/ARCHITECTURE.md, section 4).

    total = am_weight * am_score
          + lm_weight * (interp_weight * nnlm_score + (1 - interp_weight) * lm_score)
          + word_penalty * n_words - oov_penalty * n_oov

the Kaldi N-best recipe's form. A list without first-pass LM scores has lm_score = 0 for every
hypothesis (then only interp_weight = 1 is meaningful, and tuning keeps it there).
Ties go to the earlier hypothesis, i.e. the first pass's preference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from rescorer.errors import InputError
from rescorer.nbest import Utterance

MAX_WEIGHT = 1e6  # |weight|: far beyond any useful value, small enough that totals stay finite


def _weight(default: float, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Weights:
    """The five rescoring weights: the one definition that the CLIs, the artifact's tuned weights,
    the service's settings and its request schema are made from."""

    am_weight: float = _weight(1.0, "scale of am_score")
    lm_weight: float = _weight(1.0, "scale of the interpolated LM score")
    interp_weight: float = _weight(0.5, "share of our LM against the first-pass LM")
    word_penalty: float = _weight(0.0, "score added per word (positive favours longer hypotheses)")
    oov_penalty: float = _weight(0.0, "score subtracted per word our LM scored as <unk>")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def describe(cls) -> dict[str, tuple[float, str]]:
        """name -> (default, help) of every weight."""
        return {f.name: (f.default, f.metadata["help"]) for f in fields(cls)}

    @classmethod
    def problem(cls, name: str, value: Any) -> str | None:
        """What is wrong with `value` as the weight `name` (None: nothing)."""
        names = [f.name for f in fields(cls)]
        if name not in names:
            return f"unknown weight (expected {', '.join(names)})"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or abs(value) > MAX_WEIGHT:
            return f"must be a number within +-{MAX_WEIGHT:g}, found {value!r:.80}"
        return None

    @classmethod
    def check(cls, values: Any, where: str) -> dict[str, float]:
        """`values` as weights: an object of known names and finite numbers within +-MAX_WEIGHT;
        InputError naming `where`, the weight and the fault otherwise."""
        if not isinstance(values, dict):
            raise InputError(f"{where}: expected an object of weights, found {type(values).__name__}")
        names = [f.name for f in fields(cls)]
        for name, value in values.items():
            if name not in names:
                raise InputError(f"{where}: unknown weight {name!r} (expected {', '.join(names)})")
            if (problem := cls.problem(name, value)) is not None:
                raise InputError(f"{where}: {name!r} {problem}")
        return {name: float(value) for name, value in values.items()}


WEIGHT_NAMES = tuple(f.name for f in fields(Weights))


@dataclass
class NbestArrays:
    """The numbers of a set of N-best lists, flat over hypotheses, with a padded index."""

    utt_ids: list[str]
    offsets: np.ndarray  # (U+1,) start of each utterance's hypotheses
    am: np.ndarray  # (H,)
    lm: np.ndarray  # (H,) first-pass LM, 0 where absent
    nnlm: np.ndarray  # (H,) our LM
    num_words: np.ndarray  # (H,)
    num_oov: np.ndarray  # (H,)
    has_lm: bool  # every hypothesis had a first-pass LM score

    def subset(self, picks: np.ndarray) -> tuple[NbestArrays, np.ndarray]:
        """The lists `picks` (utterance positions, in that order) as arrays of their own, and the
        flat indices of their hypotheses here (to select per-hypothesis values such as errors)."""
        index = np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i in picks])
        counts = np.diff(self.offsets)[picks]
        part = NbestArrays([self.utt_ids[i] for i in picks], np.concatenate(([0], np.cumsum(counts))),
                           self.am[index], self.lm[index], self.nnlm[index], self.num_words[index],
                           self.num_oov[index], self.has_lm)
        return part, index

    @property
    def index(self) -> np.ndarray:
        """(U, N_max) hypothesis indices, -1 where a list is shorter."""
        if not hasattr(self, "_index"):
            counts = np.diff(self.offsets)
            index = np.full((len(counts), counts.max()), -1, dtype=np.int64)
            columns = np.arange(counts.max())
            valid = columns[None, :] < counts[:, None]
            index[valid] = np.arange(self.offsets[-1])
            self._index = index
        return self._index


def build_arrays(utterances: Sequence[Utterance], nnlm: np.ndarray, num_oov: np.ndarray) -> NbestArrays:
    hyps = [h for u in utterances for h in u.hyps]
    if len(hyps) != len(nnlm):
        raise ValueError(f"{len(hyps)} hypotheses but {len(nnlm)} LM scores")
    offsets = np.cumsum([0] + [len(u.hyps) for u in utterances])
    return NbestArrays(
        utt_ids=[u.utt_id for u in utterances], offsets=offsets,
        am=np.array([h.am_score for h in hyps], dtype=np.float64),
        lm=np.array([h.lm_score or 0.0 for h in hyps], dtype=np.float64),
        nnlm=np.asarray(nnlm, dtype=np.float64), num_words=np.array([len(h.words) for h in hyps], dtype=np.float64),
        num_oov=np.asarray(num_oov, dtype=np.float64), has_lm=all(h.lm_score is not None for h in hyps),
    )


def interpolated_lm(arrays: NbestArrays, weights: Weights) -> np.ndarray:
    """interp_weight * nnlm_score + (1 - interp_weight) * lm_score, per hypothesis: (H,)."""
    return weights.interp_weight * arrays.nnlm + (1 - weights.interp_weight) * arrays.lm


def total_scores(arrays: NbestArrays, weights: Weights) -> np.ndarray:
    return (weights.am_weight * arrays.am + weights.lm_weight * interpolated_lm(arrays, weights)
            + weights.word_penalty * arrays.num_words - weights.oov_penalty * arrays.num_oov)


def best_hypotheses(arrays: NbestArrays, totals: np.ndarray) -> np.ndarray:
    """Index (into the flat hypotheses) of the highest total in each utterance: (U,)."""
    index = arrays.index
    padded = np.where(index >= 0, totals[np.maximum(index, 0)], -np.inf)  # (U, N_max)
    return index[np.arange(len(index)), padded.argmax(1)]


def ranked_index(arrays: NbestArrays, totals: np.ndarray) -> np.ndarray:
    """(U, N_max) flat indices of each list's hypotheses, best total first (ties: earlier first),
    -1 padding last: every list sorted in one stable argsort."""
    index = arrays.index
    padded = np.where(index >= 0, -totals[np.maximum(index, 0)], np.inf)
    return np.take_along_axis(index, np.argsort(padded, axis=1, kind="stable"), axis=1)


def ranks(arrays: NbestArrays, totals: np.ndarray) -> np.ndarray:
    """1-based rank of every hypothesis within its list by total (ties: earlier first): (H,)."""
    ranked = ranked_index(arrays, totals)
    out = np.empty(len(totals), dtype=np.int64)
    valid = ranked >= 0
    out[ranked[valid]] = np.broadcast_to(np.arange(1, ranked.shape[1] + 1), ranked.shape)[valid]
    return out
