"""The tuner at every score scale: exact line searches, a dense brute-force grid as the yardstick,
neutral weights on a flat dev set, fixed and bounded weights, what the report is told."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rescorer.combination import NbestArrays, Weights, best_hypotheses, build_arrays, total_scores
from rescorer.errors import InputError
from rescorer.line_search import errors_along_line
from rescorer.nbest import Hypothesis, Utterance
from rescorer.tuning import SearchSpace, WorseThanFirstPassWarning, tune_weights, word_unit


def planted_lists(seed: int, scale: str, utterances: int = 120, n: int = 8):
    """Synthetic N-best lists whose scores carry the truth (fewer errors, better scores) plus
    noise, at the scale of one kind of first pass:

    kaldi:      acoustic log-likelihoods of about -2,600 per word of the audio (much the same
                for every hypothesis of a list) and n-gram LM log-probabilities of about -5 per
                hypothesis word (the right LM weight is tens);
    hyporadise: a per-token mean log-probability as the acoustic score, no first-pass LM;
    espnet:     decoder + CTC sums and a first-pass LM sum of similar size (weights near 1).
    Returns (arrays, per-hypothesis errors, reference words per utterance)."""
    rng = np.random.default_rng(seed)
    am, lm, nnlm, words, errors = [], [], [], [], []
    counts = []
    for _ in range(utterances):
        k = int(rng.integers(1, n + 1))
        counts.append(k)
        ref_len = int(rng.integers(5, 25))
        e = rng.integers(0, 6, size=k)
        length = np.maximum(1, ref_len + rng.integers(-2, 3, size=k))
        quality = -e.astype(float)
        if scale == "kaldi":
            am.append(-2600.0 * ref_len - 30 * (length - ref_len) + 40 * quality + rng.normal(0, 60, k))
            lm.append(-5.0 * length + 2 * quality + rng.normal(0, 4, k))
        elif scale == "hyporadise":
            am.append(-0.3 + 0.02 * quality + rng.normal(0, 0.04, k))
            lm.append(np.zeros(k))
        else:
            am.append(-1.5 * length + 1.0 * quality + rng.normal(0, 2, k))
            lm.append(-4.0 * length + 1.5 * quality + rng.normal(0, 3, k))
        nnlm.append(-5.0 * length + 2.5 * quality + rng.normal(0, 3, k))
        words.append(length.astype(float))
        errors.append(e)
    offsets = np.cumsum([0] + counts)
    arrays = NbestArrays(
        utt_ids=[f"u{i}" for i in range(utterances)], offsets=offsets, am=np.concatenate(am),
        lm=np.concatenate(lm), nnlm=np.concatenate(nnlm), num_words=np.concatenate(words),
        num_oov=np.zeros(offsets[-1]), has_lm=scale != "hyporadise")
    ref_words = rng.integers(5, 25, size=utterances)
    return arrays, np.concatenate(errors).astype(np.int64), ref_words


def brute_force(arrays: NbestArrays, errors: np.ndarray, fixed: dict | None = None) -> int:
    """Fewest dev errors over a dense log-spaced grid: LM weights 0 and 1e-3..1e3 (8 per decade),
    interp 0..1 in steps of 0.125, word penalties 0 and +-(1e-3..1e3 word units, 4 per decade)."""
    fixed = fixed or {}
    unit = word_unit(arrays)
    lm_weights = [fixed["lm_weight"]] if "lm_weight" in fixed else [0.0, *np.geomspace(1e-3, 1e3, 49)]
    interps = ([fixed["interp_weight"]] if "interp_weight" in fixed
               else np.linspace(0, 1, 9) if arrays.has_lm else [1.0])
    magnitudes = unit * np.geomspace(1e-3, 1e3, 25)
    penalties = np.concatenate(([0.0], magnitudes, -magnitudes))
    best = None
    for lm_weight in lm_weights:
        for interp in interps:
            for penalty in penalties:
                chosen = best_hypotheses(arrays, total_scores(arrays, Weights(1.0, lm_weight, interp, penalty)))
                count = int(errors[chosen].sum())
                best = count if best is None else min(best, count)
    return best


@pytest.mark.parametrize("scale", ["kaldi", "hyporadise", "espnet"])
def test_the_tuner_finds_at_least_the_dense_grids_optimum_at_every_scale(scale):
    arrays, errors, ref_words = planted_lists(3, scale)
    result = tune_weights(arrays, errors, ref_words)
    assert result.errors == int(errors[best_hypotheses(arrays, total_scores(arrays, result.weights))].sum())
    dense = brute_force(arrays, errors)
    # the smoothed search may give up a few dev errors for a wider optimum: at most 0.05 WER points
    assert result.errors <= dense + 0.0005 * ref_words.sum()
    exact = tune_weights(arrays, errors, ref_words, smoothing=0.0)
    assert exact.errors <= dense  # exact line searches: never worse than the grid
    assert result.at_limit == []
    if scale == "kaldi":  # the scale the old grid (LM weights up to 1.5) could not reach
        assert result.weights.lm_weight > 5


def test_the_tuner_matches_the_dense_grid_on_the_demo_lists(tmp_path):
    from rescorer.formats.reader import NbestSource, read_nbest
    from rescorer.rerank import score_nbest
    from rescorer.wer.nbest_evaluation import error_table
    from tests.nbest_fixtures import tiny_artifact
    from training.demo_nbest import write_demo_nbest

    utts = read_nbest(NbestSource(str(write_demo_nbest(tmp_path)["dev"])))
    arrays = score_nbest(tiny_artifact(), utts)  # an untrained LM: the tuner must find where it does no harm
    table = error_table(utts)
    result = tune_weights(arrays, table.hyp_errors, table.ref_words, smoothing=0.0)
    assert result.errors <= brute_force(arrays, table.hyp_errors)
    smoothed = tune_weights(arrays, table.hyp_errors, table.ref_words)
    assert smoothed.errors <= result.errors + 0.0005 * table.ref_words.sum()


def test_on_the_kaldi_scale_the_old_grid_ceiling_loses_what_the_tuner_finds():
    arrays, errors, ref_words = planted_lists(5, "kaldi")
    free = tune_weights(arrays, errors, ref_words, SearchSpace(fixed={"interp_weight": 0.0}))
    capped = tune_weights(arrays, errors, ref_words, SearchSpace(fixed={"interp_weight": 0.0},
                                                                 ranges={"lm_weight": (0.0, 1.5)}))
    assert free.errors < capped.errors
    assert capped.at_limit == ["lm_weight"] and capped.weights.lm_weight <= 1.5
    assert any("lm_weight" in w and "--range" in w for w in capped.warnings())


def test_a_flat_dev_set_gives_neutral_weights_and_says_so():
    arrays, _, ref_words = planted_lists(7, "espnet")
    same = np.full(len(arrays.am), 2, dtype=np.int64)  # every hypothesis as good as any other
    result = tune_weights(arrays, same, ref_words)
    assert result.weights == Weights(1.0, 1.0, 0.5, 0.0, 0.0)
    assert sorted(result.flat) == ["interp_weight", "lm_weight", "word_penalty"] and result.at_limit == []


def test_ties_take_the_middle_of_the_widest_step_not_an_end():
    # one list: "long" is right; it wins once the penalty exceeds 1 per word, and nothing changes beyond
    utts = [Utterance("a", [Hypothesis("x", 0.0), Hypothesis("x y z", -2.0)], "x y z")]
    arrays = build_arrays(utts, np.zeros(2), np.zeros(2))
    errors, words = np.array([2, 0]), np.array([3])
    result = tune_weights(arrays, errors, words, SearchSpace(fixed={"lm_weight": 0.0}))
    penalty_line = result.lines["word_penalty"]
    assert penalty_line.at(0.5) == 2 and penalty_line.at(1.5) == 0
    assert 1.0 < result.weights.word_penalty < result.axes["word_penalty"].high  # inside, never walking off
    assert result.at_limit == ["word_penalty"]  # the best step runs to the end of what was searched


def test_fixed_and_bounded_weights_are_honoured():
    arrays, errors, ref_words = planted_lists(11, "kaldi")
    fixed = tune_weights(arrays, errors, ref_words, SearchSpace(fixed={"lm_weight": 12.0}))
    assert fixed.weights.lm_weight == 12.0 and "lm_weight" not in fixed.lines
    assert fixed.errors <= brute_force(arrays, errors, {"lm_weight": 12.0}) + 0.0005 * ref_words.sum()
    bounded = tune_weights(arrays, errors, ref_words, SearchSpace(ranges={"word_penalty": (-5.0, 5.0),
                                                                          "lm_weight": (20.0, 30.0)}))
    assert -5 <= bounded.weights.word_penalty <= 5 and 20 <= bounded.weights.lm_weight <= 30
    assert bounded.axes["word_penalty"].low == -5 and bounded.lines["lm_weight"].knots[0] == 20


def test_the_report_names_what_the_tuner_saw_and_warns_when_it_did_not_help():
    # the first hypothesis is right but loses on every score: no weights reach it
    utts = [Utterance(f"u{i}", [Hypothesis("a b", -9.0, -9.0), Hypothesis("a c", -1.0, -1.0)], "a b")
            for i in range(3)]
    arrays = build_arrays(utts, np.full(6, -5.0), np.zeros(6))
    errors, words = np.array([0, 1] * 3), np.array([2, 2, 2])
    with pytest.warns(WorseThanFirstPassWarning, match="3 against 0"):
        result = tune_weights(arrays, errors, words)
    assert set(result.baselines) == {"first_pass", "acoustic_only", "first_pass_combination", "tuned"}
    assert result.baselines["first_pass"]["errors"] == 0 and result.errors == 3
    assert result.worse_than_first_pass == {"tuned_errors": 3, "first_pass_errors": 0}
    assert result.to_dict()["worse_than_first_pass"] == result.worse_than_first_pass
    assert any("MORE dev errors than the first pass" in w for w in result.warnings())


@given(st.integers(0, 10_000), st.sampled_from(["kaldi", "hyporadise", "espnet"]))
@settings(max_examples=40, deadline=None)
def test_the_line_search_equals_the_argmax_at_every_point(seed, scale):
    arrays, errors, _ = planted_lists(seed, scale, utterances=20, n=6)
    rng = np.random.default_rng(seed)
    weights = Weights(1.0, float(rng.choice([0.01, 1.0, 15.0])), float(rng.random()), float(rng.normal()))
    intercepts = total_scores(arrays, Weights(weights.am_weight, 0.0, weights.interp_weight, weights.word_penalty))
    slopes = total_scores(arrays, Weights(weights.am_weight, 1.0, weights.interp_weight, weights.word_penalty)) \
        - intercepts
    line = errors_along_line(arrays.index, intercepts, slopes, errors, 0.0, 100.0)
    ends = np.append(line.knots[1:], 100.0)
    for start, end in zip(line.knots, ends, strict=True):  # inside every step, and at random points
        for t in ((start + end) / 2, *rng.uniform(0, 100, 3)):
            chosen = best_hypotheses(arrays, intercepts + t * slopes)
            if not np.any(np.isclose(np.append(line.knots, 100.0), t)):
                assert line.at(t) == int(errors[chosen].sum())


def test_search_space_flags_are_parsed_and_bad_ones_named():
    space = SearchSpace.parse(["lm_weight=12", "interp-weight=0"], ["word_penalty=-5:5"])
    assert space.fixed == {"lm_weight": 12.0, "interp_weight": 0.0} and space.ranges == {"word_penalty": (-5.0, 5.0)}
    for fixes, ranges, message in [
        (["lm=1"], None, "NAME one of"), (["lm_weight"], None, "NAME=VALUE"), (["lm_weight=x"], None, "not a number"),
        (["lm_weight=nan"], None, "finite"), (None, ["lm_weight=5"], "LOW:HIGH"), (None, ["lm_weight=5:1"], "LOW < HIGH"),
        (["lm_weight=1"], ["lm_weight=0:2"], "both fixed"), (None, ["interp_weight=0:2"], "within 0:1"),
    ]:
        with pytest.raises(InputError, match=message):
            SearchSpace.parse(fixes, ranges)


def test_dev_other_sized_lists_take_a_bounded_number_of_line_searches():
    arrays, errors, ref_words = planted_lists(1, "espnet", utterances=2864, n=30)  # dev_other's shape
    result = tune_weights(arrays, errors, ref_words)
    # 3 x 14 starts with a penalty line each, up to 3 refinements of 10 rounds x 3 lines, 3 report lines
    assert result.line_searches <= 42 + 3 * 10 * 3 + 3 + 1
    assert result.errors <= result.baselines["first_pass_combination"]["errors"]


def test_smoothing_prefers_a_wide_valley_to_a_sliver_that_is_one_error_lower():
    import numpy as np

    from rescorer.line_search import StepFunction
    from rescorer.tuning import Axis, _smoothed_best

    axis = Axis("lm_weight", 0.0, 1000.0, 1e-3, (0.0,))
    # errors 50 everywhere, 41 on a sliver at 0.500-0.505, 42 across 5..20
    line = StepFunction(np.array([0.0, 0.5, 0.505, 5.0, 20.0]), np.array([50, 41, 50, 42, 50]), 1000.0)
    assert 5.0 < _smoothed_best(line, axis, 0.1) < 20.0
    # the exact rule takes the sliver

    steps = line.steps()
    fewest = min(s[2] for s in steps)
    assert [s for s in steps if s[2] == fewest] == [(0.5, 0.505, 41)]


def _first_pass_ordered(arrays: NbestArrays, errors: np.ndarray):
    """The same lists, each sorted so that its first hypothesis is the first pass's choice
    (am + lm, ties kept in order): a first pass whose order its scores explain."""
    order = np.concatenate([start + np.argsort(-(arrays.am + arrays.lm)[start:end], kind="stable")
                            for start, end in zip(arrays.offsets[:-1], arrays.offsets[1:], strict=True)])
    from dataclasses import replace

    sorted_arrays = replace(arrays, am=arrays.am[order], lm=arrays.lm[order], nnlm=arrays.nnlm[order],
                            num_words=arrays.num_words[order], num_oov=arrays.num_oov[order])
    return sorted_arrays, errors[order]


@given(st.integers(0, 10_000), st.sampled_from(["kaldi", "espnet"]))
@settings(max_examples=25, deadline=None)
def test_the_tuned_weights_are_never_worse_than_a_first_pass_their_scores_explain(seed, scale):
    arrays, errors, ref_words = planted_lists(seed, scale, utterances=60)
    arrays, errors = _first_pass_ordered(arrays, errors)
    result = tune_weights(arrays, errors, ref_words)
    chosen = best_hypotheses(arrays, total_scores(arrays, result.weights))
    assert result.errors == int(errors[chosen].sum())  # what evaluation then measures with the weights
    assert result.worse_than_first_pass is None
    assert result.errors <= result.baselines["first_pass"]["errors"]
    for name, entry in result.baselines.items():  # every baseline with weights is a candidate
        if "weights" in entry:
            assert result.errors <= entry["errors"], name


@given(st.integers(0, 10_000), st.sampled_from(["kaldi", "hyporadise", "espnet"]), st.floats(0.0, 0.3))
@settings(max_examples=40, deadline=None)
def test_coordinate_ascent_never_ends_above_where_it_started(seed, scale, smoothing):
    from rescorer.tuning import _axes, _Search, _start_weights

    arrays, errors, _ = planted_lists(seed, scale, utterances=60)
    space = SearchSpace()
    axes = _axes(arrays, space)
    search = _Search(arrays, errors, smoothing=smoothing)
    start = _start_weights(arrays, space, axes)
    for lm_weight in (0.0, 0.1, 1.0, 10.0, 100.0):
        weights = Weights(**{**start.to_dict(), "lm_weight": lm_weight})
        before = search.errors(weights)
        ended, errors_at_end = search.ascend(weights, before, list(axes.values()))
        assert errors_at_end <= before
        assert errors_at_end == search.errors(ended)


@given(st.integers(0, 10_000), st.sampled_from(["kaldi", "espnet"]))
@settings(max_examples=25, deadline=None)
def test_the_first_pass_combination_baseline_is_the_exact_minimum_along_its_line(seed, scale):
    arrays, errors, ref_words = planted_lists(seed, scale, utterances=60)
    result = tune_weights(arrays, errors, ref_words)  # smoothing on: the baseline must not be smoothed
    entry = result.baselines["first_pass_combination"]
    neutral = Weights(1.0, 1.0, 0.0, 0.0, 0.0)
    intercepts = total_scores(arrays, Weights(**{**neutral.to_dict(), "lm_weight": 0.0}))
    slopes = total_scores(arrays, neutral) - intercepts
    line = errors_along_line(arrays.index, intercepts, slopes, errors, 0.0, 1000.0)
    assert entry["errors"] == int(line.errors.min())
    chosen = best_hypotheses(arrays, total_scores(arrays, Weights(**entry["weights"])))
    assert int(errors[chosen].sum()) == entry["errors"]
