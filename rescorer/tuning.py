"""Tuning the combination weights on a dev set: an exhaustive grid search.

am_weight stays 1 (only ratios matter for the argmax); the grid covers lm_weight,
interp_weight and word_penalty. Every hypothesis's error count against its reference is
computed once (jiwer), so each grid point costs one weighted sum and one argmax per list.
The chosen weights are then frozen and applied to the test set: never tune on what you report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from rescorer.combination import NbestArrays, Weights, best_hypotheses, total_scores


@dataclass(frozen=True)
class Grid:
    lm_weights: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(0, 31))  # 0 .. 1.5
    interp_weights: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(0, 11))  # 0 .. 1
    word_penalties: tuple[float, ...] = (-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0)

    @property
    def size(self) -> int:
        return len(self.lm_weights) * len(self.interp_weights) * len(self.word_penalties)


DEFAULT_GRID = Grid()


@dataclass
class TuningResult:
    weights: Weights
    errors: int  # dev errors at the chosen weights
    ref_words: int
    # WER (fraction) over the (lm_weight, interp_weight) plane at the chosen word penalty
    surface: np.ndarray = field(repr=False)
    grid: Grid = field(repr=False)  # the grid searched last (extended where the best lay on an edge)
    extended: list[str] = field(default_factory=list)  # the edges the search went past

    @property
    def wer(self) -> float:
        return self.errors / self.ref_words


MAX_EXTENSIONS = 4  # times an axis may be extended when the best point lies on its edge


def tune_weights(arrays: NbestArrays, hyp_errors: np.ndarray, ref_words: np.ndarray,
                 grid: Grid = DEFAULT_GRID, progress=None) -> TuningResult:
    """Grid search for the weights with the fewest dev errors (ties: the earlier grid point).

    A best point on the upper edge of the LM weights, or on either edge of the word penalties,
    may lie beyond the grid: that axis is extended by as many steps again (the same spacing)
    and searched again, up to MAX_EXTENSIONS times; `extended` names what was extended.
    """
    extended: list[str] = []
    for _ in range(MAX_EXTENSIONS + 1):
        result = _search(arrays, hyp_errors, ref_words, grid, progress)
        wider = _extend(grid, result.weights)
        if wider is None:
            break
        grid, axis = wider
        extended.append(axis)
    result.extended = extended
    return result


def _extend(grid: Grid, best: Weights) -> tuple[Grid, str] | None:
    lm, penalties = grid.lm_weights, grid.word_penalties
    if len(lm) > 1 and best.lm_weight == lm[-1] and lm[-1] > 0:
        step = lm[-1] - lm[-2]
        more = tuple(round(lm[-1] + step * k, 6) for k in range(1, len(lm)))
        return Grid(lm + more, grid.interp_weights, penalties), f"lm_weight above {lm[-1]:g}"
    if len(penalties) > 1 and best.word_penalty in (penalties[0], penalties[-1]) and best.word_penalty != 0:
        low_step, high_step = penalties[1] - penalties[0], penalties[-1] - penalties[-2]
        n = len(penalties) // 2
        lower = tuple(round(penalties[0] - low_step * k, 6) for k in range(n, 0, -1))
        upper = tuple(round(penalties[-1] + high_step * k, 6) for k in range(1, n + 1))
        edge = "below" if best.word_penalty == penalties[0] else "above"
        value = penalties[0] if edge == "below" else penalties[-1]
        return (Grid(grid.lm_weights, grid.interp_weights, lower + penalties + upper),
                f"word_penalty {edge} {value:g}")
    return None


def _search(arrays: NbestArrays, hyp_errors: np.ndarray, ref_words: np.ndarray, grid: Grid,
            progress=None) -> TuningResult:
    interp_weights: Sequence[float] = grid.interp_weights if arrays.has_lm else (1.0,)
    total_words = int(ref_words.sum())
    best: tuple[int, Weights] | None = None
    errors = np.zeros((len(grid.word_penalties), len(grid.lm_weights), len(interp_weights)), dtype=np.int64)
    for p, penalty in enumerate(grid.word_penalties):
        for i, lm_weight in enumerate(grid.lm_weights):
            for j, interp in enumerate(interp_weights):
                weights = Weights(1.0, lm_weight, interp, penalty)
                chosen = best_hypotheses(arrays, total_scores(arrays, weights))
                errors[p, i, j] = hyp_errors[chosen].sum()
                if best is None or errors[p, i, j] < best[0]:
                    best = (int(errors[p, i, j]), weights)
            if progress is not None:
                progress.update(len(interp_weights))
    assert best is not None
    p_best = grid.word_penalties.index(best[1].word_penalty)
    return TuningResult(best[1], best[0], total_words, errors[p_best] / total_words,
                        Grid(grid.lm_weights, tuple(interp_weights), grid.word_penalties))
