"""The statistics the seeded experiment tables print: means over seeds and paired intervals."""

import math

import pytest

from experiments.seed_statistics import mean_sd, paired_difference, paired_relative_difference, t975


def test_mean_and_sample_standard_deviation():
    stats = mean_sd([2.0, 4.0, 9.0])
    assert stats["mean"] == pytest.approx(5.0)
    assert stats["sd"] == pytest.approx(math.sqrt((9 + 1 + 16) / 2))  # n - 1 in the denominator
    assert stats["n"] == 3
    assert mean_sd([3.0])["sd"] is None


def test_paired_relative_difference_uses_only_shared_seeds_and_the_t_quantile():
    a = {1: 110.0, 2: 104.0, 3: 99.0, 9: 500.0}  # seed 9 has no partner: left out
    b = {1: 100.0, 2: 100.0, 3: 100.0, 4: 1.0}
    got = paired_relative_difference(a, b)
    assert got["seeds"] == [1, 2, 3]
    assert got["per_seed_percent"] == pytest.approx([10.0, 4.0, -1.0])
    mean, sd = 13 / 3, math.sqrt(sum((d - 13 / 3) ** 2 for d in (10, 4, -1)) / 2)
    half = 4.303 * sd / math.sqrt(3)  # t_{0.975} with 2 degrees of freedom
    assert got["mean_percent"] == pytest.approx(mean)
    assert got["interval_percent"] == pytest.approx([mean - half, mean + half])


def test_paired_difference_in_points_and_the_cases_without_an_interval():
    got = paired_difference({1: 0.062, 2: 0.060}, {1: 0.064, 2: 0.061}, scale=100, unit="points")
    assert got["per_seed_points"] == pytest.approx([-0.2, -0.1])
    assert got["interval_points"][0] < got["mean_points"] < got["interval_points"][1]
    assert paired_difference({1: 1.0}, {1: 0.5})["interval"] is None  # one seed: no spread to measure
    assert paired_difference({1: 1.0}, {2: 0.5}) is None


def test_t_quantiles_fall_toward_the_normal_and_need_two_values():
    assert t975(1) == pytest.approx(12.706)
    assert t975(100) == pytest.approx(1.96)
    assert all(t975(df) > t975(df + 1) for df in range(1, 30))
    with pytest.raises(ValueError, match="at least 2 values"):
        t975(0)


def test_a_ptb_row_over_seeds_and_its_paired_comparisons():
    from experiments.ptb_distillation import paired_rows, student_row

    def run(valid, test):
        return {"valid_ppl": valid, "test_ppl": test, "parameters": 10, "self_normalized": False,
                "train_seconds": 5.0, "test": {}}

    tr = student_row({1: run(100.0, 90.0), 2: run(110.0, 99.0), 3: run(105.0, 95.0)})
    kl = student_row({1: run(100.0, 100.0), 2: run(100.0, 100.0), 4: run(1.0, 1.0)})
    assert tr["seeds"] == [1, 2, 3] and tr["valid_ppl_by_seed"] == {1: 100.0, 2: 110.0, 3: 105.0}
    assert tr["valid_ppl"] == pytest.approx(105.0) and tr["valid_ppl_sd"] == pytest.approx(5.0)
    assert tr["test_ppl_by_seed"][2] == 99.0
    (paired,) = paired_rows({"TR": tr, "KL only": kl})
    assert (paired["row"], paired["against"]) == ("TR", "KL only")
    assert paired["valid"]["seeds"] == [1, 2]  # seed 3 and 4 have no partner
    assert paired["valid"]["per_seed_percent"] == pytest.approx([0.0, 10.0])
    assert paired["test"]["per_seed_percent"] == pytest.approx([-10.0, -1.0])


def test_wsj_seeded_students_are_summarized_and_paired_by_seed():
    from experiments.wsj_distillation import seed_summary, seeded_comparisons

    rows = {"TR student seed 1": {"wer": 0.130, "reference_ppl": 200.0},
            "TR student seed 2": {"wer": 0.132, "reference_ppl": 210.0},
            "KL only student seed 1": {"wer": 0.131, "reference_ppl": 190.0},
            "KL only student seed 2": {"wer": 0.135, "reference_ppl": 195.0},
            "TR student": {"wer": 0.5, "reference_ppl": 1.0}}  # a run without seeds is its own row
    summary = seed_summary(rows)
    assert summary["TR student"]["seeds"] == [1, 2]
    assert summary["TR student"]["wer_mean"] == pytest.approx(0.131)
    assert summary["KL only student"]["reference_ppl_mean"] == pytest.approx(192.5)
    paired = {(p["row"], p["against"]): p for p in seeded_comparisons(rows)}
    assert paired[("TR student", "KL only student")]["per_seed_points"] == pytest.approx([-0.1, -0.3])
