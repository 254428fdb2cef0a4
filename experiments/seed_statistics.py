"""Means over seeds and paired differences between two rows run with the same seeds.

A row run with seeds s_1..s_n has one perplexity per seed. Two rows share a seed when they start
from the same initialization and see the same batches and noise, so their difference per seed
removes most of the variation between seeds: the paired relative difference
d_i = ppl_a(s_i) / ppl_b(s_i) - 1 has a Student-t 95 % interval mean(d) +- t(n-1) sd(d) / sqrt(n).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# two-sided 95 % quantiles of Student's t, t_{0.975}(df), df = 1..30; above 30 the normal's 1.96
# is within 2 % of them
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def t975(df: int) -> float:
    if df < 1:
        raise ValueError(f"a t interval needs at least 2 values (df >= 1), got df = {df}")
    return _T975[df - 1] if df <= len(_T975) else 1.96


def mean_sd(values: Sequence[float]) -> dict[str, float | int | None]:
    """Mean, sample standard deviation (None for one value) and count."""
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {"mean": mean, "sd": sd, "n": n}


def paired_relative_difference(a: dict[int, float], b: dict[int, float]) -> dict | None:
    """a / b - 1 over the seeds both have, in percent: mean, 95 % t interval (None for one seed),
    the seeds and each seed's difference. None when they share no seed."""
    return _paired(a, b, lambda x, y: 100.0 * (x / y - 1.0), "percent")


def paired_difference(a: dict[int, float], b: dict[int, float], scale: float = 1.0, unit: str = "") -> dict | None:
    """scale * (a - b) over the seeds both have (for WER: scale 100, unit "points"), as above."""
    return _paired(a, b, lambda x, y: scale * (x - y), unit)


def _paired(a: dict[int, float], b: dict[int, float], difference, unit: str) -> dict | None:
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    differences = [difference(a[s], b[s]) for s in seeds]
    stats = mean_sd(differences)
    interval = None
    if stats["sd"] is not None:
        half = t975(len(seeds) - 1) * stats["sd"] / math.sqrt(len(seeds))
        interval = [stats["mean"] - half, stats["mean"] + half]
    suffix = f"_{unit}" if unit else ""
    return {f"mean{suffix}": stats["mean"], f"interval{suffix}": interval, "seeds": seeds,
            f"per_seed{suffix}": differences}
