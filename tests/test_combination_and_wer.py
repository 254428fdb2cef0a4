import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rescorer.combination import Weights, best_hypotheses, build_arrays, ranks, total_scores
from rescorer.nbest import Hypothesis, Utterance
from rescorer.tuning import SearchSpace, tune_weights
from rescorer.wer.bootstrap import paired_bootstrap
from rescorer.wer.counts import alignment_counts, compute_wer, pairwise_errors
from rescorer.wer.nbest_evaluation import error_table, evaluate_set, oracle_hypotheses
from tests.nbest_fixtures import tiny_utterances


def _arrays(nnlm):
    utts = tiny_utterances()
    return utts, build_arrays(utts, np.asarray(nnlm, dtype=float), np.zeros(len(nnlm)))


def test_total_follows_the_kaldi_recipe_formula():
    _, arrays = _arrays([-30, -31, -20, -25, -24, -3])
    w = Weights(am_weight=0.5, lm_weight=0.8, interp_weight=0.25, word_penalty=0.1, oov_penalty=2.0)
    arrays.num_oov[1] = 1
    expected = 0.5 * arrays.am + 0.8 * (0.25 * arrays.nnlm + 0.75 * arrays.lm) + 0.1 * arrays.num_words - 2.0 * arrays.num_oov
    np.testing.assert_allclose(total_scores(arrays, w), expected)


def test_ties_go_to_the_earlier_hypothesis_and_ranks_follow_totals():
    _, arrays = _arrays([0, 0, 0, 0, 0, 0])
    totals = np.array([1.0, 1.0, 0.0, -1.0, 2.0, 2.0])
    assert best_hypotheses(arrays, totals).tolist() == [0, 4]
    assert ranks(arrays, totals).tolist() == [1, 2, 3, 3, 1, 2]


def test_wer_parts_first_pass_oracle_and_gain_share():
    utts, arrays = _arrays([-30, -10, -20, -25, -40, -3])
    table = error_table(utts)
    assert table.hyp_errors.tolist() == [0, 1, 3, 0, 1, 5]
    evaluation = evaluate_set(utts, arrays, table, Weights(1.0, 1.0, 1.0, 0.0))
    assert evaluation.first_pass.errors == 0 and evaluation.oracle.errors == 0
    # nnlm prefers hyp 2 of u1 ("a mat": 1 substitution) and u2's first hypothesis
    assert evaluation.rescored.substitutions == 1 and evaluation.rescored.ref_words == 11
    assert [c["utt_id"] for c in evaluation.changed] == ["u1"]


def test_compute_wer_counts_match_a_hand_alignment():
    result = compute_wer(["a b c d", "x y"], ["a c d e", "x y z"])
    assert (result.substitutions + result.deletions + result.insertions) == 3
    assert result.ref_words == 6 and result.wer == pytest.approx(0.5) and result.sentence_errors == 2
    assert pairwise_errors(["a b", "c"], ["a b", ""]).tolist() == [0, 1]


def test_one_error_count_where_minimum_edits_and_sclite_differ():
    # 7 minimum edits, 8 errors under sclite's costs: every figure must use the 8
    ref, hyp = "b d b c b d a", "a c a a a d c d"
    assert pairwise_errors([ref], [hyp]).tolist() == [8] == [compute_wer([ref], [hyp]).errors]
    utts = [Utterance("u1", [Hypothesis(hyp, am_score=0.0), Hypothesis(ref, am_score=-1.0)], ref=ref)]
    arrays = build_arrays(utts, np.zeros(2), np.zeros(2, dtype=np.int64))
    table = error_table(utts)
    evaluation = evaluate_set(utts, arrays, table, Weights(1.0, 0.0, 0.0, 0.0), resamples=10)
    assert evaluation.first_pass.errors == 8 and evaluation.oracle.errors == 0
    assert evaluation.interval.delta == 0.0 and evaluation.changed == []
    tuned = tune_weights(arrays, table.hyp_errors, table.ref_words,
                         SearchSpace(fixed={"lm_weight": 0.0, "interp_weight": 0.0, "word_penalty": 0.0}))
    assert tuned.errors == evaluation.first_pass.errors


@given(st.lists(st.tuples(st.lists(st.sampled_from("abcd"), max_size=9), st.lists(st.sampled_from("abcd"), max_size=9)),
                min_size=1, max_size=6))
@settings(max_examples=150, deadline=None)
def test_per_hypothesis_counts_add_up_to_the_corpus_count(pairs):
    refs = [" ".join(r) or "a" for r, _ in pairs]
    hyps = [" ".join(h) for _, h in pairs]
    assert int(pairwise_errors(refs, hyps).sum()) == compute_wer(refs, hyps).errors


def test_bootstrap_interval_brackets_the_observed_change():
    rng = np.random.default_rng(1)
    words = rng.integers(5, 20, size=400)
    base = rng.integers(0, 3, size=400)
    better = np.maximum(base - (rng.random(400) < 0.3), 0)
    interval = paired_bootstrap(base, better, words, resamples=500)
    assert interval.low <= interval.delta <= interval.high < 0
    assert interval.share_improved > 0.99
    same = paired_bootstrap(base, base, words, resamples=200)
    assert same.low == same.high == same.delta == 0.0


def test_tuning_recovers_weights_that_fix_the_errors_on_a_planted_set():
    utts, arrays = _arrays([-5, -50, -50, -10, -60, -60])  # our LM knows the answers
    table = error_table(utts)
    arrays.lm[:] = [-50, -5, -5, -60, -5, -5]  # the first-pass LM prefers the wrong ones
    arrays.am[:] = 0.0
    result = tune_weights(arrays, table.hyp_errors, table.ref_words, SearchSpace(fixed={"word_penalty": 0.0}))
    assert result.errors == 0 and result.weights.interp_weight > 0.5
    assert set(result.lines) == {"lm_weight", "interp_weight"}


SCLITE = shutil.which("sctk") or shutil.which("sclite")
needs_sclite = pytest.mark.skipif(SCLITE is None, reason="NIST sclite (Debian sctk) not installed")


def _sclite_sum_row(tmp_path, refs: list[str], hyps: list[str]) -> tuple[int, list[float]]:
    """sclite's Sum/Avg row: reference words, then % correct, sub, del, ins, err."""
    for name, texts in (("ref.trn", refs), ("hyp.trn", hyps)):
        (tmp_path / name).write_text("".join(f"{t} (spk-{i:03d})\n" for i, t in enumerate(texts)))
    command = [SCLITE, "sclite"] if SCLITE.endswith("sctk") else [SCLITE]
    out = subprocess.run([*command, "-r", str(tmp_path / "ref.trn"), "trn", "-h", str(tmp_path / "hyp.trn"), "trn",
                          "-i", "rm", "-o", "sum", "stdout"], capture_output=True, text=True, timeout=60, check=True).stdout
    fields = next(line for line in out.splitlines() if "Sum/Avg" in line).replace("|", " ").split()
    return int(fields[2]), [float(f) for f in fields[3:8]]


@needs_sclite
@pytest.mark.parametrize("seed", [7, 8, 9, 10, 11])
def test_wer_agrees_with_nist_sclite_to_the_printed_digit(tmp_path, seed):
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(30)]
    refs, hyps = [], []
    for _ in range(60):
        ref = list(rng.choice(vocab, size=rng.integers(1, 15)))
        hyp = [w for w in ref if rng.random() > 0.1]
        hyp = [w if rng.random() > 0.15 else str(rng.choice(vocab)) for w in hyp]
        if rng.random() < 0.3:
            hyp.insert(int(rng.integers(0, len(hyp) + 1)), str(rng.choice(vocab)))
        refs.append(" ".join(ref))
        hyps.append(" ".join(hyp))
    n_words, (corr, sub, dele, ins, err) = _sclite_sum_row(tmp_path, refs, hyps)
    ours = compute_wer(refs, hyps)
    assert n_words == ours.ref_words
    assert f"{100 * ours.wer:.1f}" == f"{err:.1f}"
    assert f"{100 * ours.hits / ours.ref_words:.1f}" == f"{corr:.1f}"
    assert f"{100 * ours.insertions / ours.ref_words:.1f}" == f"{ins:.1f}"
    assert f"{100 * ours.substitutions / ours.ref_words:.1f}" == f"{sub:.1f}"
    assert f"{100 * ours.deletions / ours.ref_words:.1f}" == f"{dele:.1f}"
    # the per-hypothesis counts (tuning, oracle, bootstrap) are the same count
    assert f"{100 * pairwise_errors(refs, hyps).sum() / n_words:.1f}" == f"{err:.1f}"


@needs_sclite
def test_sclite_counts_eight_errors_where_minimum_edits_count_seven(tmp_path):
    n_words, (*_, err) = _sclite_sum_row(tmp_path, ["b d b c b d a"], ["a c a a a d c d"])
    assert (n_words, err) == (7, pytest.approx(100 * 8 / 7, abs=0.05))


@given(st.lists(st.tuples(st.lists(st.sampled_from("abc"), min_size=1, max_size=7),
                          st.lists(st.lists(st.sampled_from("abc"), max_size=8), min_size=1, max_size=6)),
                min_size=1, max_size=5))
@settings(max_examples=150, deadline=None)
def test_the_pruned_oracle_and_lazy_counts_equal_aligning_every_hypothesis(lists):
    utts = [Utterance(f"u{k}", [Hypothesis(" ".join(h), am_score=0.0) for h in hyps], ref=" ".join(ref))
            for k, (ref, hyps) in enumerate(lists)]
    arrays = build_arrays(utts, np.zeros(sum(len(u.hyps) for u in utts)), np.zeros(sum(len(u.hyps) for u in utts), dtype=np.int64))
    full = alignment_counts([u.ref for u in utts for _ in u.hyps], [h.text for u in utts for h in u.hyps])
    lazy = error_table(utts)
    assert lazy.oracle(arrays).tolist() == oracle_hypotheses(arrays, full[:, 1:].sum(1)).tolist()
    picked = np.arange(len(full))[::2]
    assert lazy.counts_of(picked).tolist() == full[picked].tolist()
    assert lazy.counts.tolist() == full.tolist()


@given(st.lists(st.lists(st.integers(-3, 3), min_size=1, max_size=6), min_size=1, max_size=6))
@settings(max_examples=100, deadline=None)
def test_ranks_in_one_argsort_equal_sorting_each_list_with_ties_to_the_earlier(totals_per_list):
    from rescorer.combination import NbestArrays, ranked_index

    offsets = np.cumsum([0] + [len(t) for t in totals_per_list])
    totals = np.array([float(t) for ts in totals_per_list for t in ts])
    n = len(totals)
    arrays = NbestArrays([f"u{i}" for i in range(len(totals_per_list))], offsets, np.zeros(n), np.zeros(n),
                         np.zeros(n), np.zeros(n), np.zeros(n), True)
    expected = np.empty(n, dtype=np.int64)
    for u, ts in enumerate(totals_per_list):
        order = sorted(range(len(ts)), key=lambda i: (-ts[i], i))
        for r, i in enumerate(order, start=1):
            expected[offsets[u] + i] = r
    assert ranks(arrays, totals).tolist() == expected.tolist()
    assert ranked_index(arrays, totals)[:, 0].tolist() == best_hypotheses(arrays, totals).tolist()
