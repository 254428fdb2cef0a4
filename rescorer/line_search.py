"""Dev errors along a line through weight space, exactly (the line search of MERT).

Hold every weight but one fixed and each hypothesis's total is a line in the free weight t:
total_h(t) = a_h + t * b_h. The hypothesis a list picks is the top of the upper envelope of
its lines, so it changes only where two lines cross, and the corpus error count along t is a
step function with finitely many steps. `errors_along_line` computes that step function over
[low, high] for every list at once: each list walks its envelope from `low` upward, one
crossing per step (the slope of the chosen line grows at every step, so a list of N
hypotheses takes at most N - 1 steps), all lists in one numpy operation per step.

Ties follow `rescorer.combination.best_hypotheses`: where two lines are equal the earlier
hypothesis wins (identical lines everywhere); at a crossing the line that is higher just
after it (the steeper one) takes over. The tuner only ever picks points inside steps, where
no ties remain except between identical lines.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StepFunction:
    """Errors on [knots[k], knots[k + 1]) is errors[k]; the last step runs to `high`."""

    knots: np.ndarray  # (m,) increasing, knots[0] = low
    errors: np.ndarray  # (m,) int64
    high: float

    def at(self, t: float) -> int:
        return int(self.errors[np.searchsorted(self.knots, t, side="right") - 1])

    def steps(self) -> list[tuple[float, float, int]]:
        """(start, end, errors) of every step, adjacent steps of equal errors merged."""
        out: list[tuple[float, float, int]] = []
        ends = np.append(self.knots[1:], self.high)
        for start, end, errors in zip(self.knots.tolist(), ends.tolist(), self.errors.tolist(), strict=True):
            if out and out[-1][2] == errors:
                out[-1] = (out[-1][0], end, errors)
            else:
                out.append((start, end, int(errors)))
        return out


def errors_along_line(index: np.ndarray, intercepts: np.ndarray, slopes: np.ndarray, hyp_errors: np.ndarray,
                      low: float, high: float) -> StepFunction:
    """The corpus error count of the chosen hypotheses as t runs over [low, high].

    index: (U, N) flat hypothesis indices, -1 where a list is shorter (NbestArrays.index);
    intercepts, slopes, hyp_errors: (H,) per hypothesis. low and high must be finite, low < high.
    """
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(f"a line search needs finite low < high, got [{low}, {high}]")
    valid = index >= 0
    safe = np.maximum(index, 0)
    a = np.where(valid, intercepts[safe], -np.inf)
    b = np.where(valid, slopes[safe], 0.0)
    e = np.where(valid, hyp_errors[safe], 0).astype(np.int64)
    rows = np.arange(len(index))

    # The line chosen just after `low`: the highest there, then the steepest, then the earliest.
    at_low = a + low * b
    top = at_low.max(1, keepdims=True)
    current = np.where(valid & (at_low == top), b, -np.inf).argmax(1)
    base = int(e[rows, current].sum())

    event_t: list[np.ndarray] = []
    event_delta: list[np.ndarray] = []
    active = rows
    t = np.full(len(index), float(low))
    while len(active):
        a_c, b_c = a[active, current[active]], b[active, current[active]]
        steeper = valid[active] & (b[active] > b_c[:, None])
        with np.errstate(divide="ignore", invalid="ignore"):
            crossing = (a_c[:, None] - a[active]) / (b[active] - b_c[:, None])
        crossing = np.where(steeper, np.maximum(crossing, t[active, None]), np.inf)
        t_next = crossing.min(1)
        moving = np.isfinite(t_next) & (t_next < high)
        active, crossing, t_next = active[moving], crossing[moving], t_next[moving]
        if not len(active):
            break
        # Among the lines crossing there, the steepest (then the earliest) is on top after it.
        at_next = crossing == t_next[:, None]
        following = np.where(at_next, b[active], -np.inf).argmax(1)
        event_t.append(t_next)
        event_delta.append(e[active, following] - e[active, current[active]])
        current[active] = following
        t[active] = t_next

    if event_t:
        times, deltas = np.concatenate(event_t), np.concatenate(event_delta)
        order = np.argsort(times, kind="stable")
        times, deltas = times[order], deltas[order]
        knots, first = np.unique(times, return_index=True)
        sums = np.add.reduceat(deltas, first) if len(deltas) else np.zeros(0, dtype=np.int64)
        knots = np.concatenate(([float(low)], knots))
        errors = base + np.concatenate(([0], np.cumsum(sums)))
        if knots[1] == low:  # a crossing exactly at low belongs to the first step
            knots, errors = np.delete(knots, 1), np.delete(errors, 0)
    else:
        knots, errors = np.array([float(low)]), np.array([base])
    return StepFunction(knots, errors.astype(np.int64), float(high))
