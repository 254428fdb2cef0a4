"""The weight tuner against the exhaustive grid it replaced and a dense brute-force search.

    python experiments/tuner_comparison.py --data-dir ../shared/data --out runs/tuner
    python experiments/tuner_comparison.py --data-dir ../shared/data --out runs/tuner \\
        --lm runs/librispeech/lm-recentered

1. WSJ HUB-1 (`wsj-hub1-nbest`: an n-gram first pass, acoustic log-likelihoods of about -2,600
   per word), the first-pass LM only (interp_weight 0): two-fold cross-validation (tune on the
   even-numbered utterances, test on the odd ones, and the other way round, test halves
   pooled), with four tuners: `rescorer.tuning` as shipped (smoothed line searches), the same
   with exact line searches (`smoothing=0`), the exhaustive grid of
   earlier releases (LM weights 0-1.5 in steps of 0.05, interp 0-1 in steps of 0.1, penalties
   -2..2 in steps of 0.5, extended past an edge the best point lies on; reimplemented below as
   `old_grid_search`), and a dense brute-force grid (LM weights 0 and 0.01-1,000, 64 per decade;
   penalties -100..100 in steps of 0.25; ties: the first point in that order). Errors are
   sclite's, as everywhere in the product. Then LibriSpeech dev_clean -> test_clean and
   dev_other -> test_other with the first-pass LM only, the same four tuners.
2. With --lm (an artifact whose vocabulary fits upper-case text, e.g. the WikiText-2 model of
   `experiments/librispeech_wikitext.py`): the new tuner against the old grid on LibriSpeech
   dev_other -> test_other, on HyPoradise WSJ and ATIS (two-fold, upper-cased), and on HUB-1
   with every weight free: test WER and tuning seconds, the same scores for both.
Everything to OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.adaptation_runs import write_json
from rescorer.artifact import load_artifact
from rescorer.combination import NbestArrays, Weights, best_hypotheses, build_arrays, total_scores
from rescorer.formats.reader import NbestSource, read_nbest
from rescorer.nbest import Hypothesis, Utterance
from rescorer.rerank import score_nbest
from rescorer.tuning import SearchSpace, tune_weights
from rescorer.wer.nbest_evaluation import ErrorTable, error_table

LIBRISPEECH_MAPPING = "am=0.6*decoder+0.4*ctc,lm=lm"


def old_grid_search(arrays: NbestArrays, errors: np.ndarray, fixed_interp: float | None = None) -> Weights:
    """The exhaustive grid of earlier releases: the fewest dev errors, ties to the earlier point
    (penalty, then LM weight, then interp order), the LM-weight axis extended by as many steps
    again while the best lies on its upper edge (at most 4 times), likewise the penalties."""
    lm_weights = [round(0.05 * i, 2) for i in range(31)]
    interps = [fixed_interp] if fixed_interp is not None else (
        [round(0.1 * i, 1) for i in range(11)] if arrays.has_lm else [1.0])
    penalties = [-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0]
    for _ in range(5):
        best = None
        for penalty in penalties:
            for lm_weight in lm_weights:
                for interp in interps:
                    weights = Weights(1.0, lm_weight, interp, penalty)
                    count = int(errors[best_hypotheses(arrays, total_scores(arrays, weights))].sum())
                    if best is None or count < best[0]:
                        best = (count, weights)
        weights = best[1]
        if weights.lm_weight == lm_weights[-1] and lm_weights[-1] > 0:
            step = lm_weights[-1] - lm_weights[-2]
            lm_weights += [round(lm_weights[-1] + step * k, 6) for k in range(1, len(lm_weights))]
        elif weights.word_penalty in (penalties[0], penalties[-1]) and weights.word_penalty != 0:
            n = len(penalties) // 2
            penalties = ([penalties[0] - 0.5 * k for k in range(n, 0, -1)] + penalties
                         + [penalties[-1] + 0.5 * k for k in range(1, n + 1)])
        else:
            break
    return weights


def dense_brute_force(arrays: NbestArrays, errors: np.ndarray, interp: float, ties: list | None = None) -> Weights:
    """The first point with the fewest dev errors; every point tied with it appended to `ties`."""
    lm_weights = np.concatenate(([0.0], np.geomspace(0.01, 1000, 5 * 64 + 1)))
    penalties = np.arange(-100, 100.001, 0.25)
    points = []
    for lm_weight in lm_weights:
        base = total_scores(arrays, Weights(1.0, float(lm_weight), interp, 0.0))
        for penalty in penalties:
            chosen = best_hypotheses(arrays, base + penalty * arrays.num_words)
            points.append((int(errors[chosen].sum()), Weights(1.0, float(lm_weight), interp, float(penalty))))
    fewest = min(count for count, _ in points)
    if ties is not None:
        ties.append([w for count, w in points if count == fewest])
    return next(w for count, w in points if count == fewest)


def _fold_test(arrays: NbestArrays, test: np.ndarray) -> tuple[np.ndarray, NbestArrays]:
    part, index = arrays.subset(test)
    return index, part


def cross_validate(arrays: NbestArrays, table: ErrorTable, tuners: dict, spreads: dict | None = None) -> dict:
    """Two folds (even / odd utterances): each tuner tuned on one, its test errors on the other, pooled."""
    errors, spreads = table.hyp_errors, spreads or {}
    utterances = np.arange(len(arrays.utt_ids))
    folds = [(utterances[0::2], utterances[1::2]), (utterances[1::2], utterances[0::2])]
    out = {}
    for name, tuner in tuners.items():
        test_errors, seconds, fold_rows = 0, 0.0, []
        for dev, test in folds:
            dev_arrays, dev_index = arrays.subset(dev)
            test_arrays, test_index = arrays.subset(test)
            started = time.perf_counter()
            weights = tuner(dev_arrays, errors[dev_index], table.ref_words[dev])
            seconds += time.perf_counter() - started
            dev_count = int(errors[dev_index][best_hypotheses(dev_arrays, total_scores(dev_arrays, weights))].sum())
            count = int(errors[test_index][best_hypotheses(test_arrays, total_scores(test_arrays, weights))].sum())
            test_errors += count
            fold_rows.append({"weights": weights.to_dict(), "dev_errors": dev_count, "test_errors": count})
        words = int(table.ref_words.sum())
        if name in spreads:  # the test errors of every point tied on dev, fold by fold: how much a tie rule decides
            per_fold = [[int(errors[test_index][best_hypotheses(test_arrays, total_scores(test_arrays, w))].sum())
                         for w in tied] for tied, (_, test_index, test_arrays) in
                        zip(spreads[name], [(d, *_fold_test(arrays, t)) for d, t in folds], strict=True)]
            out_spread = {"tied_points": [len(t) for t in per_fold],
                          "pooled_test_wer_min": sum(min(t) for t in per_fold) / words,
                          "pooled_test_wer_max": sum(max(t) for t in per_fold) / words,
                          "pooled_test_wer_median": sum(float(np.median(t)) for t in per_fold) / words}
            print(f"  {'':32s} over the {out_spread['tied_points']} points tied on dev: pooled test WER"
                  f" {100 * out_spread['pooled_test_wer_min']:.2f}-{100 * out_spread['pooled_test_wer_max']:.2f} %"
                  f" (median {100 * out_spread['pooled_test_wer_median']:.2f} %)", flush=True)
        out[name] = {"test_errors": test_errors, "test_wer": test_errors / words, "ref_words": words,
                     "tuning_seconds": seconds, "folds": fold_rows}
        if name in spreads:
            out[name]["ties"] = out_spread
        print(f"  {name:32s} pooled test WER {100 * test_errors / words:6.2f} %  ({test_errors} errors,"
              f" tuning {seconds:.2f} s)  " + "; ".join(
                  f"lm {f['weights']['lm_weight']:.4g} interp {f['weights']['interp_weight']:.3g}"
                  f" penalty {f['weights']['word_penalty']:.4g} dev {f['dev_errors']}" for f in fold_rows), flush=True)
    return out


def new_tuner(space: SearchSpace | None = None, **options):
    return lambda arrays, errors, words: tune_weights(arrays, errors, words, space, **options).weights


def dev_to_test(dev: tuple, test: tuple, tuners: dict) -> dict:
    """Each tuner tuned on dev (arrays, table), its test WER and tuning seconds."""
    (dev_arrays, dev_table), (test_arrays, test_table) = dev, test
    dev_table.hyp_errors, test_table.hyp_errors  # noqa: B018 - every alignment made before any tuner is timed
    rows = {}
    for tuner_name, tuner in tuners.items():
        started = time.perf_counter()
        weights = tuner(dev_arrays, dev_table.hyp_errors, dev_table.ref_words)
        seconds = time.perf_counter() - started
        count = int(test_table.hyp_errors[best_hypotheses(test_arrays, total_scores(test_arrays, weights))].sum())
        dev_count = int(dev_table.hyp_errors[best_hypotheses(dev_arrays, total_scores(dev_arrays, weights))].sum())
        words = int(test_table.ref_words.sum())
        rows[tuner_name] = {"test_errors": count, "test_wer": count / words, "ref_words": words,
                            "dev_errors": dev_count, "tuning_seconds": seconds, "weights": weights.to_dict()}
        print(f"  {tuner_name:32s} test WER {100 * count / words:6.2f} %  dev errors {dev_count}"
              f"  tuning {seconds:.2f} s  lm {weights.lm_weight:.4g} interp {weights.interp_weight:.3g}"
              f" penalty {weights.word_penalty:.4g}", flush=True)
    return rows


def hub1(data_dir: Path) -> list[Utterance]:
    return read_nbest(NbestSource(str(data_dir / "wsj-hub1-nbest" / "nbest.jsonl.gz")))


def upper(utterances: list[Utterance]) -> list[Utterance]:
    return [Utterance(u.utt_id, [replace(h, text=h.text.upper()) if isinstance(h, Hypothesis) else h for h in u.hyps],
                      None if u.ref is None else u.ref.upper(), u.extra) for u in utterances]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("runs/tuner"))
    parser.add_argument("--lm", type=Path, help="an artifact for the comparison on lists with our LM's scores")
    args = parser.parse_args()
    results: dict = {"settings": {"data_dir": str(args.data_dir), "lm": None if args.lm is None else str(args.lm)}}

    utterances = hub1(args.data_dir)
    table = error_table(utterances)
    ties: list = []
    n = sum(len(u.hyps) for u in utterances)
    arrays = build_arrays(utterances, np.zeros(n), np.zeros(n))
    first = int(table.hyp_errors[arrays.offsets[:-1]].sum())
    print(f"WSJ HUB-1, first-pass LM only: first pass {100 * first / table.ref_words.sum():.2f} %", flush=True)
    results["hub1_first_pass_lm"] = {
        "first_pass_wer": first / int(table.ref_words.sum()),
        "tuners": cross_validate(arrays, table, {
            "rescorer.tuning": new_tuner(SearchSpace(fixed={"interp_weight": 0.0})),
            "rescorer.tuning, exact": new_tuner(SearchSpace(fixed={"interp_weight": 0.0}), smoothing=0.0),
            "old grid (earlier releases)": lambda a, e, w: old_grid_search(a, e, fixed_interp=0.0),
            "dense brute force": lambda a, e, w: dense_brute_force(a, e, 0.0, ties),
        }, spreads={"dense brute force": ties})}

    ls = args.data_dir / "librispeech-espnet2-hubert-30best" / "nbest"
    librispeech = {}
    for condition in ("clean", "other"):
        parts = []
        for split in ("dev", "test"):
            utts = read_nbest(NbestSource(str(ls / f"{split}_{condition}.jsonl.gz"), score_mapping=LIBRISPEECH_MAPPING))
            h = sum(len(u.hyps) for u in utts)
            parts.append((build_arrays(utts, np.zeros(h), np.zeros(h)), error_table(utts)))
        librispeech[condition] = parts
    results["librispeech_first_pass_lm"] = {}
    for condition, (dev, test) in librispeech.items():
        print(f"LibriSpeech dev_{condition} -> test_{condition}, first-pass LM only:", flush=True)
        results["librispeech_first_pass_lm"][condition] = dev_to_test(dev, test, {
            "rescorer.tuning": new_tuner(SearchSpace(fixed={"interp_weight": 0.0})),
            "rescorer.tuning, exact": new_tuner(SearchSpace(fixed={"interp_weight": 0.0}), smoothing=0.0),
            "old grid (earlier releases)": lambda a, e, w: old_grid_search(a, e, fixed_interp=0.0),
        })

    if args.lm is not None:
        artifact = load_artifact(args.lm)
        lists = {"WSJ HUB-1": upper(utterances)}
        for name in ("wsj_score", "atis"):
            every = read_nbest(NbestSource(str(args.data_dir / "hyporadise-v0" / "test" / f"test_{name}.json.gz")))
            lists[f"HyPoradise {name.replace('_score', '').upper()}"] = upper([u for u in every if u.extra.get("scored")])
        tuners = {"rescorer.tuning": new_tuner(), "rescorer.tuning, exact": new_tuner(smoothing=0.0),
                  "old grid (earlier releases)": lambda a, e, w: old_grid_search(a, e)}
        results["with_lm"] = {}
        for name, utts in lists.items():
            print(f"{name}, {args.lm} (two-fold):", flush=True)
            results["with_lm"][name] = cross_validate(score_nbest(artifact, utts), error_table(utts), tuners)
        dev = read_nbest(NbestSource(str(ls / "dev_other.jsonl.gz"), score_mapping=LIBRISPEECH_MAPPING))
        test = read_nbest(NbestSource(str(ls / "test_other.jsonl.gz"), score_mapping=LIBRISPEECH_MAPPING))
        print("LibriSpeech dev_other -> test_other:", flush=True)
        results["with_lm"]["LibriSpeech test_other"] = dev_to_test(
            (score_nbest(artifact, dev), error_table(dev)), (score_nbest(artifact, test), error_table(test)), tuners)
    write_json(args.out / "results.json", results)
    print(json.dumps({"written": str(args.out / "results.json")}))


if __name__ == "__main__":
    main()
