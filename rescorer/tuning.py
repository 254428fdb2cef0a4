"""Tuning the combination weights on a dev set, at whatever scale the scores come in.

The weights (rescorer.combination.Weights) enter the total linearly one at a time: with the
others held, each hypothesis's total is a line in the free weight, and the dev error count
along it is a step function that `rescorer.line_search` computes exactly. The search:

1. Scale: the LM weight is searched from 0 to 1,000 times the acoustic weight (Kaldi's raw
   acoustic costs need 10-17, HyPoradise's per-token means 0.001-0.1), the word penalty over
   +-1,000 acoustic units per word (`word_unit`, measured on the lists), so no grid written
   for one scale has to fit another.
2. Starts: every LM weight of a log-spaced ladder (0, then 0.001 to 1,000, two per decade)
   with interp_weight 0, 0.5 and 1, each with the exactly best word penalty for it.
3. Refinement: from the best few starts, coordinate ascent with the exact line search (the
   line search of MERT; SRILM's nbest-optimize and Moses' MERT search the same way) until a
   full round lowers the dev errors no more; each ascent keeps the best point it met. The
   result is the best of every start, every ascent's best point and the baselines' own weights
   (acoustic score alone; the first pass's combination at its exact best LM weight), error
   counts always as `best_hypotheses` counts them, so it is never worse on dev than any of
   them. The first pass's own choice is not a point of the weights when the lists' order is
   not explained by their scores; a result worse than it says so (`worse_than_first_pass`, a
   `WorseThanFirstPassWarning`).
4. Robustness and ties: a large dev set's exact optimum is often a sliver (a step 1 % wide) that
   the test set does not share, so each line search takes the point whose neighbourhood (+-0.1
   in asinh(t / unit), about +-10 % of an LM weight) has the fewest errors on average (the
   smoothed error of MERT's regularization, Cer et al. 2008), ties to the fewest errors at the
   point, then the middle; with `smoothing=0`, the middle of the widest step of fewest errors.
   asinh(t / unit) is logarithmic away from 0 (a plateau from 2 to 200 has its middle at 20)
   and linear near it (a flat word-penalty axis gives 0). Among starts that
   end with the same errors, the earlier start wins: the first-pass combination before
   anything that departs further from it, i.e. starts are taken in the order of their
   distance from the neutral point (LM weight 1, interp_weight 0.5, no penalty), and a weight
   along which the dev errors never change keeps its value (`flat`): a dev set on which the
   weights do not matter gives neutral weights. A chosen point whose best step reaches the end
   of the searched range is reported (`at_limit`): the dev set asks for more than was searched.

Weights can be fixed (`fixed`) or bounded (`ranges`); only ratios matter, so am_weight is
fixed at 1 unless a range is given for it (then fix the LM weight), and the OOV penalty stays
at 0 unless a range is given. Each hypothesis's error count is computed once (ErrorTable);
the frozen weights are then applied to the test sets: never tune on what you report.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field, replace

import numpy as np

from rescorer.combination import WEIGHT_NAMES, NbestArrays, Weights, best_hypotheses, total_scores
from rescorer.errors import InputError
from rescorer.line_search import StepFunction, errors_along_line

BASELINE_NAMES = {"first_pass": "first pass (first hypothesis)", "acoustic_only": "acoustic score only",
                  "first_pass_combination": "first-pass combination (am + s x lm)", "tuned": "tuned"}
LADDER = (0.0,) + tuple(10.0 ** (k / 2) for k in range(-6, 7))  # 0, 0.001, 0.00316, ..., 1000
MAX_ROUNDS = 10  # coordinate-ascent rounds from one start (it stops earlier when a round gains nothing)
STARTS_REFINED = 3
SMOOTHING = 0.1  # half-width (asinh units: about +-10 % of an LM weight) of the window each line search
# averages errors over; 0: the exact minimum. Chosen by experiments/tuner_comparison.py (docs/RESULTS.md)


@dataclass(frozen=True)
class SearchSpace:
    """What the tuner may change: `fixed` weights keep their value; `ranges` bound the others.

    Unnamed weights: am_weight fixed at 1, oov_penalty fixed at 0, lm_weight in [0, 1000],
    interp_weight in [0, 1], word_penalty in +-1000 acoustic units per word (from the lists)."""

    fixed: dict[str, float] = field(default_factory=dict)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, value in self.fixed.items():
            if (problem := Weights.problem(name, value)) is not None:
                raise InputError(f"fixed weight {name!r}: {problem}")
            if name in self.ranges:
                raise InputError(f"weight {name!r} is both fixed and given a range")
        for name, bounds in self.ranges.items():
            low, high = bounds
            for value in bounds:
                if (problem := Weights.problem(name, value)) is not None:
                    raise InputError(f"range of {name!r}: {problem}")
            if not low < high:
                raise InputError(f"range of {name!r}: expected LOW < HIGH, found {low:g}:{high:g}")
        if "interp_weight" in self.ranges and not 0 <= self.ranges["interp_weight"][0] <= \
                self.ranges["interp_weight"][1] <= 1:
            raise InputError("range of 'interp_weight': must lie within 0:1")

    def allows(self, weights: Weights) -> bool:
        """Whether `weights` keep every fixed value and lie in every range."""
        values = weights.to_dict()
        return all(values[name] == value for name, value in self.fixed.items()) and \
            all(low <= values[name] <= high for name, (low, high) in self.ranges.items())

    @classmethod
    def parse(cls, fixes: list[str] | None, ranges: list[str] | None) -> SearchSpace:
        """From the CLI's `--fix NAME=VALUE` and `--range NAME=LOW:HIGH` (each repeatable)."""
        fixed: dict[str, float] = {}
        bounded: dict[str, tuple[float, float]] = {}
        for text in fixes or ():
            name, value = _split(text, "--fix", "NAME=VALUE")
            fixed[name] = _number(value, f"--fix {text}")
        for text in ranges or ():
            name, value = _split(text, "--range", "NAME=LOW:HIGH")
            low, sep, high = value.partition(":")
            if not sep:
                raise InputError(f"--range {text}: expected NAME=LOW:HIGH, e.g. lm_weight=5:20")
            bounded[name] = (_number(low, f"--range {text}"), _number(high, f"--range {text}"))
        return cls(fixed, bounded)


def _split(text: str, flag: str, form: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or name not in WEIGHT_NAMES:
        raise InputError(f"{flag} {text}: expected {form} with NAME one of {', '.join(WEIGHT_NAMES)}")
    return name, value.strip()


def _number(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{where}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise InputError(f"{where}: {text!r} is not a finite number")
    return value


@dataclass
class Axis:
    """One weight the tuner moves: its range and the unit of its asinh scale."""

    name: str
    low: float
    high: float
    unit: float
    natural: tuple[float, ...]  # ends of the range that are limits of the weight itself (LM weight 0)


@dataclass
class TuningResult:
    weights: Weights
    errors: int  # dev errors at the chosen weights
    ref_words: int
    baselines: dict[str, dict]  # what the tuner saw on dev: name -> {"errors", "wer", ...}
    lines: dict[str, StepFunction]  # dev errors along each free weight through the chosen point
    axes: dict[str, Axis]
    at_limit: list[str]  # free weights whose best step reaches an end of the searched range
    flat: list[str]  # free weights along which the dev errors never change (kept at their start value)
    line_searches: int
    seconds: float
    smoothing: float = SMOOTHING

    @property
    def method(self) -> str:
        rule = (f"on each line the point with the fewest errors averaged over +-{self.smoothing:g} asinh units"
                if self.smoothing > 0 else "on each line the middle of the widest step of fewest errors")
        return f"coordinate ascent with exact line searches (MERT) from a log-spaced ladder of LM weights; {rule}"

    @property
    def wer(self) -> float:
        return self.errors / self.ref_words

    @property
    def worse_than_first_pass(self) -> dict | None:
        """{"tuned_errors", "first_pass_errors"} where the tuned weights make more dev errors than
        keeping every list's first hypothesis (no weights may reproduce the first pass's order:
        a Whisper first pass, scores from another system); None otherwise. Callers that apply
        the weights refuse them (`rescorer rescore`, `set-weights`) or say so."""
        first = self.baselines.get("first_pass", {}).get("errors")
        if first is None or self.errors <= first:
            return None
        return {"tuned_errors": self.errors, "first_pass_errors": first}

    def warnings(self) -> list[str]:
        """What a user must know before trusting the weights: a tuned point no better on dev than
        a combination it could have stayed at, and weights whose best step reaches the end of
        the searched range."""
        out = []
        if (worse := self.worse_than_first_pass) is not None:
            out.append(f"the tuned weights make MORE dev errors than the first pass's own choice ({worse['tuned_errors']}"
                       f" against {worse['first_pass_errors']}): the lists' order is not explained by their scores,"
                       " and rescoring with these weights would raise the WER: keep the first hypotheses")
        others = {k: v for k, v in self.baselines.items() if k != "tuned"}
        if others and worse is None:
            name, best = min(others.items(), key=lambda kv: kv[1]["errors"])
            if self.errors >= best["errors"] and self.errors > 0:
                out.append(f"the tuned weights are no better on dev than the {name.replace('_', ' ')}"
                           f" ({self.errors} against {best['errors']} errors)")
        plateaus = self.plateaus()
        for name in self.at_limit:
            axis, (low, high) = self.axes[name], plateaus[name]
            out.append(f"{name} {getattr(self.weights, name):.6g} is the middle of a best dev step ({low:.6g} to"
                       f" {high:.6g}) that reaches the end of the searched range [{axis.low:.6g}, {axis.high:.6g}]:"
                       f" the dev set does not bound it (--range {name}=LOW:HIGH searches elsewhere)")
        return out

    def plateaus(self) -> dict[str, tuple[float, float]]:
        """Per free weight, the interval around the chosen value with the same dev errors."""
        out = {}
        for name, line in self.lines.items():
            value = getattr(self.weights, name)
            for start, end, _ in line.steps():
                if start <= value <= end:
                    out[name] = (start, end)
                    break
        return out

    def to_dict(self) -> dict:
        return {
            "method": self.method, "dev_errors": self.errors, "dev_wer": self.wer, "ref_words": self.ref_words,
            "baselines": self.baselines, "warnings": self.warnings(),
            "worse_than_first_pass": self.worse_than_first_pass, "at_limit": self.at_limit, "flat": self.flat,
            "plateaus": {k: list(v) for k, v in self.plateaus().items()},
            "ranges": {k: [a.low, a.high] for k, a in self.axes.items()},
            "line_searches": self.line_searches, "seconds": self.seconds,
            "lines": {k: {"knots": line.knots.tolist(), "errors": line.errors.tolist(), "high": line.high}
                      for k, line in self.lines.items()},
        }


class WorseThanFirstPassWarning(UserWarning):
    """Issued by tune_weights when its best weights make more dev errors than the first pass."""


def check_not_worse_than_first_pass(document: object, source: str, accept: bool = False) -> str | None:
    """Refuse (InputError) the weights of an eval report whose tuning found them worse on dev
    than the first pass (`TuningResult.worse_than_first_pass`), unless `accept`; returns a note
    to record beside weights accepted anyway, else None."""
    tuning = document.get("tuning") if isinstance(document, dict) else None
    worse = tuning.get("worse_than_first_pass") if isinstance(tuning, dict) else None
    if not worse:
        return None
    figures = f"{worse.get('tuned_errors')} against {worse.get('first_pass_errors')} dev errors"
    if not accept:
        raise InputError(f"{source}: these tuned weights make more dev errors than the first pass ({figures}):"
                         " rescoring with them would raise the WER; keep the first hypotheses, or pass"
                         " --accept-worse-weights to use them anyway")
    return f"accepted although worse than the first pass on dev ({figures})"


def word_unit(arrays: NbestArrays) -> float:
    """The acoustic score one word is worth on these lists: the median, over hypotheses whose
    length differs from their list's first, of |am difference| / |length difference| (the LM
    score where there is no acoustic score; 1 where neither varies)."""
    first = np.repeat(arrays.offsets[:-1], np.diff(arrays.offsets))
    length = np.abs(arrays.num_words - arrays.num_words[first])
    differs = length > 0
    for scores in (arrays.am, arrays.lm, arrays.nnlm):
        per_word = np.abs(scores - scores[first])[differs] / length[differs]
        per_word = per_word[per_word > 0]
        if len(per_word):
            return float(np.median(per_word))
    return 1.0


def _axes(arrays: NbestArrays, space: SearchSpace) -> dict[str, Axis]:
    unit = word_unit(arrays)
    defaults = {
        "am_weight": Axis("am_weight", 0.0, 1000.0, 1e-3, (0.0,)),
        "lm_weight": Axis("lm_weight", 0.0, 1000.0, 1e-3, (0.0,)),
        "interp_weight": Axis("interp_weight", 0.0, 1.0, 1.0, (0.0, 1.0)),
        "word_penalty": Axis("word_penalty", -1000.0 * unit, 1000.0 * unit, 1e-3 * unit, ()),
        "oov_penalty": Axis("oov_penalty", 0.0, 1000.0 * unit, 1e-3 * unit, (0.0,)),
    }
    free = {"lm_weight", "interp_weight", "word_penalty"} - set(space.fixed) | set(space.ranges)
    if not arrays.has_lm:  # no first-pass LM score: only our LM can be weighted
        free.discard("interp_weight")
    axes = {}
    for name in WEIGHT_NAMES:
        if name not in free:
            continue
        axis = defaults[name]
        if name in space.ranges:
            low, high = space.ranges[name]
            axis = replace(axis, low=low, high=high, natural=tuple(v for v in axis.natural if v in (low, high)))
        axes[name] = axis
    return axes


def _start_weights(arrays: NbestArrays, space: SearchSpace, axes: dict[str, Axis]) -> Weights:
    values = {"am_weight": 1.0, "lm_weight": 1.0, "interp_weight": 1.0 if not arrays.has_lm else 0.5,
              "word_penalty": 0.0, "oov_penalty": 0.0}
    values.update(space.fixed)
    for name, axis in axes.items():
        values[name] = min(max(values[name], axis.low), axis.high)
    return Weights(**values)


def _smoothed_best(line: StepFunction, axis: Axis, h: float) -> float:
    """The point along `line` whose window of half-width `h` (asinh units) holds the fewest
    errors on average (the errors beyond the range's ends taken as at the ends); among equals,
    the fewest errors at the point itself, then the middle one. The average is piecewise linear
    between the knots +- h, so its minimum is at one of those points or the steps' middles."""
    starts = np.arcsinh(line.knots / axis.unit)
    ends = np.append(starts[1:], np.arcsinh(line.high / axis.unit))
    errors = line.errors.astype(np.float64)
    steps = len(starts)
    low, high = starts[0], ends[-1]
    area = np.concatenate(([0.0], np.cumsum(errors * (ends - starts))))  # the integral up to each step's start

    def integral(u: np.ndarray) -> np.ndarray:
        inside = np.clip(u, low, high)
        i = np.clip(np.searchsorted(starts, inside, side="right") - 1, 0, steps - 1)
        value = area[i] + (inside - starts[i]) * errors[i]
        return value + np.minimum(u - low, 0.0) * errors[0] + np.maximum(u - high, 0.0) * errors[-1]

    candidates = np.unique(np.clip(np.concatenate((starts[1:] - h, starts[1:] + h, (starts + ends) / 2)), low, high))
    average = (integral(candidates + h) - integral(candidates - h)) / (2 * h)
    at = errors[np.clip(np.searchsorted(starts, candidates, side="right") - 1, 0, steps - 1)]
    best = np.flatnonzero(average <= average.min() + 1e-9)
    best = best[at[best] == at[best].min()]
    u = float(candidates[best[len(best) // 2]])
    return float(min(max(_unwarp(u, axis.unit), axis.low), axis.high))


def _widest_best(line: StepFunction, axis: Axis) -> float:
    """The middle (in asinh units) of the widest step with the fewest errors along `line`."""
    steps = line.steps()
    fewest = min(s[2] for s in steps)
    widest = max((s for s in steps if s[2] == fewest), key=lambda s: _warp(s[1], axis.unit) - _warp(s[0], axis.unit))
    middle = _unwarp((_warp(widest[0], axis.unit) + _warp(widest[1], axis.unit)) / 2, axis.unit)
    return min(max(middle, widest[0]), widest[1])


def _warp(t: float, unit: float) -> float:
    return math.asinh(t / unit)


def _unwarp(u: float, unit: float) -> float:
    return unit * math.sinh(u)


class _Search:
    def __init__(self, arrays: NbestArrays, hyp_errors: np.ndarray, progress=None, smoothing: float = 0.0):
        self.arrays, self.hyp_errors, self.progress = arrays, np.asarray(hyp_errors, dtype=np.int64), progress
        self.smoothing = smoothing
        self.line_searches = 0

    def errors(self, weights: Weights) -> int:
        return int(self.hyp_errors[best_hypotheses(self.arrays, total_scores(self.arrays, weights))].sum())

    def line(self, weights: Weights, axis: Axis) -> StepFunction:
        """Dev errors as `axis` runs over its range, the other weights as in `weights`."""
        intercepts = total_scores(self.arrays, replace(weights, **{axis.name: 0.0}))
        slopes = total_scores(self.arrays, replace(weights, **{axis.name: 1.0})) - intercepts
        self.line_searches += 1
        if self.progress is not None:
            self.progress.update(1)
        return errors_along_line(self.arrays.index, intercepts, slopes, self.hyp_errors, axis.low, axis.high)

    def best_on_line(self, weights: Weights, axis: Axis) -> tuple[Weights, int]:
        """The middle (in asinh units) of the widest step with the fewest errors along `axis`,
        or with smoothing, the point whose neighbourhood has the fewest errors on average; the
        value unchanged where the errors do not change along it at all."""
        line = self.line(weights, axis)
        if np.all(line.errors == line.errors[0]):
            return weights, int(line.errors[0])
        if self.smoothing > 0:
            chosen = replace(weights, **{axis.name: _smoothed_best(line, axis, self.smoothing)})
        else:
            chosen = replace(weights, **{axis.name: _widest_best(line, axis)})
        # counted as evaluation counts them (best_hypotheses: the earliest of tied hypotheses), not
        # read off the line, whose value at a knot follows the steepest of the lines that meet there
        return chosen, self.errors(chosen)

    def ascend(self, weights: Weights, errors: int, axes: list[Axis]) -> tuple[Weights, int]:
        """Coordinate ascent from `weights` until a round over `axes` lowers the errors no more;
        returns the point of fewest errors met on the way (the start included). With smoothing a
        line search moves to the best neighbourhood, which can hold more errors at its point than
        the point it left, so the path is not monotone: its best point is kept, never its end."""
        best = (errors, weights)
        for _ in range(MAX_ROUNDS):
            before = best[0]
            for axis in axes:
                weights, errors = self.best_on_line(weights, axis)
                if errors < best[0]:
                    best = (errors, weights)
            if best[0] >= before:
                break
        return best[1], best[0]


def tune_weights(arrays: NbestArrays, hyp_errors: np.ndarray, ref_words: np.ndarray,
                 space: SearchSpace | None = None, progress=None, smoothing: float = SMOOTHING) -> TuningResult:
    """The weights with the fewest dev errors that `space` allows (see the module's docstring)."""
    started = time.perf_counter()
    space = space or SearchSpace()
    axes = _axes(arrays, space)
    search = _Search(arrays, hyp_errors, progress, smoothing)
    start = _start_weights(arrays, space, axes)

    # Starts: the ladder of LM weights x a few interpolation weights, each with its best penalty.
    lm_values = _ladder(axes["lm_weight"]) if "lm_weight" in axes else [start.lm_weight]
    interp_values = ([axes["interp_weight"].low, (axes["interp_weight"].low + axes["interp_weight"].high) / 2,
                      axes["interp_weight"].high] if "interp_weight" in axes else [start.interp_weight])
    starts: list[tuple[int, float, Weights]] = []
    for interp in interp_values:
        for lm_weight in lm_values:
            weights = replace(start, lm_weight=lm_weight, interp_weight=interp)
            if "word_penalty" in axes:
                weights, errors = search.best_on_line(weights, axes["word_penalty"])
            else:
                errors = search.errors(weights)
            starts.append((errors, _departure(weights, start), weights))
    starts.sort(key=lambda s: (s[0], s[1]))

    order = [axes[n] for n in ("lm_weight", "interp_weight", "word_penalty", "am_weight", "oov_penalty") if n in axes]
    total_words = int(np.asarray(ref_words).sum())
    baselines = _baselines(arrays, search, total_words, axes)
    # Candidates: the refined starts, the unrefined ones, and the baselines' own weights (where
    # the space allows them), so the tuned point is never worse on dev than any of them.
    candidates = list(starts)
    for errors, _, weights in starts[:STARTS_REFINED]:
        weights, errors = search.ascend(weights, errors, order)
        candidates.append((errors, _departure(weights, start), weights))
    for entry in baselines.values():
        if "weights" in entry and space.allows(weights := Weights(**entry["weights"])):
            candidates.append((entry["errors"], _departure(weights, start), weights))
    errors, _, weights = min(candidates, key=lambda c: (c[0], c[1]))
    if not order:  # everything fixed
        weights, errors = start, search.errors(start)
    lines = {axis.name: search.line(weights, axis) for axis in order}

    baselines["tuned"] = {"errors": errors, "wer": errors / total_words if total_words else 0.0,
                          "weights": weights.to_dict()}
    flat = [name for name, line in lines.items() if np.all(line.errors == line.errors[0])]
    result = TuningResult(weights, errors, total_words, baselines, lines, axes, [], flat,
                          search.line_searches, time.perf_counter() - started, smoothing)
    for name, (start_t, end_t) in result.plateaus().items():
        axis = axes[name]
        if name not in flat and ((start_t == axis.low and axis.low not in axis.natural)
                                 or (end_t == axis.high and axis.high not in axis.natural)):
            result.at_limit.append(name)
    if (worse := result.worse_than_first_pass) is not None:  # every library caller is told, not only the CLI
        warnings.warn(f"tune_weights: the tuned weights make more dev errors than the first pass"
                      f" ({worse['tuned_errors']} against {worse['first_pass_errors']}); check"
                      " TuningResult.worse_than_first_pass before applying them", WorseThanFirstPassWarning,
                      stacklevel=2)
    return result


def _departure(weights: Weights, neutral: Weights) -> float:
    """How far a start lies from the neutral point: LM weights compared on the asinh scale."""
    return (abs(_warp(weights.lm_weight, 1e-3) - _warp(neutral.lm_weight, 1e-3))
            + abs(weights.interp_weight - neutral.interp_weight))


def _ladder(axis: Axis) -> list[float]:
    inside = [v for v in LADDER if axis.low < v < axis.high]
    return sorted({axis.low, axis.high, *inside}) if axis.high - axis.low > 0 else [axis.low]


def _baselines(arrays: NbestArrays, search: _Search, total_words: int, axes: dict[str, Axis]) -> dict[str, dict]:
    """Dev errors of the first hypothesis, of the acoustic score alone, and of the first pass's
    own combination (am + s * lm, s the exactly best LM weight along the line: the middle of the
    widest step of fewest errors, unsmoothed, no penalty). Each entry with weights gives them."""
    def entry(errors: int, **extra) -> dict:
        return {"errors": errors, "wer": errors / total_words if total_words else 0.0, **extra}

    acoustic = Weights(1.0, 0.0, 0.0, 0.0, 0.0)
    out = {"first_pass": entry(int(search.hyp_errors[arrays.offsets[:-1]].sum())),
           "acoustic_only": entry(search.errors(acoustic), weights=acoustic.to_dict())}
    if arrays.has_lm and np.any(arrays.lm != 0):
        lm_axis = axes.get("lm_weight", Axis("lm_weight", 0.0, 1000.0, 1e-3, (0.0,)))
        exact = _Search(arrays, search.hyp_errors, smoothing=0.0)
        weights, errors = exact.best_on_line(Weights(1.0, 1.0, 0.0, 0.0, 0.0), lm_axis)
        search.line_searches += exact.line_searches
        out["first_pass_combination"] = entry(errors, lm_weight=weights.lm_weight, weights=weights.to_dict())
    return out
