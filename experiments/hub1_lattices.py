"""Lattice rescoring against N-best rescoring on the WSJ HUB-1 lists, with the same LM and weights.

    python -m training.cli train --train ../shared/data/ptb/ptb.train.txt.gz \
        --dev ../shared/data/ptb/ptb.valid.txt.gz --out runs/ptb-lm --loss ce --embedding-dim 200 \
        --hidden-dim 200 --num-layers 1 --dropout 0.25 --batch-size 32 --max-epochs 5
    python experiments/hub1_lattices.py --data-dir ../shared/data --model runs/ptb-lm/artifact \
        --out runs/hub1-lattices

Lists: the 213 WSJ HUB-1 N-best lists of an n-gram first pass (`wsj-hub1-nbest/raw`), read with
their per-token acoustic and first-pass LM log-scores (`.acc`, `.llm`: one column per
Penn-Treebank token and one for the end of sentence). Each utterance's list is merged into a word
lattice by `rescorer lattice from-nbest`'s per-word merge (rescorer/lattice/from_nbest.py: points
between tokens merged where the tokens and scores before them, or after them, are the same), so a
lattice holds its hypotheses and the paths that cross between them where their segments meet;
the number of paths per lattice is reported against N.

One combination for both methods, per token sequence: cost = (1 - w) * G + w * LM + a * A + p * T,
G the first-pass LM cost (-log-prob), LM our LM's (with the end of sentence), A the acoustic cost,
T the number of tokens: Kaldi pytorchnn's interpolation, the acoustic scale and the word-insertion
penalty that Kaldi's scoring sweeps. N-best: each hypothesis scored as a sentence
(`score_sentences`), the cheapest hypothesis taken. Lattice: `expand_lattice` at an n-gram order
(2, 3, 4, and 0 = exact with no pruning) and --beam, the cheapest path taken (`best_path`).
Weights: a grid over w, a and p, tuned on the even-numbered utterances (file order), WER on the odd
ones, and the other way round; the two test halves are also pooled, every utterance tested once
by the weights of the other half (jiwer-equivalent counts, the tokens joined back as the references write them: `was n't` ->
`wasn't`). Lattices are expanded once per order for tuning (at w = 0.5, a = 1/12) and
interpolated at each grid point; on the test half they are expanded at the tuned weights. The
LM reads each token in PTB's conventions one by one (a number word other than one..nine -> `N`,
`mister` -> `mr.`; words outside its vocabulary are `<unk>`), the same tokens for both methods.
Paired bootstrap intervals of each lattice order against N-best, and of N-best against the first
pass (w = 0, tuned the same way), per fold and pooled. Seconds: our LM's scoring of the test half's hypotheses
(N-best) and its lattice expansion at each order, in one process, with arcs per second. Results
to OUT/results.json.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.adaptation_runs import write_json
from experiments.wsj_distillation import UNITS, _is_number
from rescorer.artifact import load_artifact
from rescorer.formats.reader import NbestSource, read_nbest
from rescorer.lattice.best_path import best_path
from rescorer.lattice.from_nbest import count_paths, lattice_from_nbest
from rescorer.lattice.rescore import RescoreOptions, expand_lattice
from rescorer.nbest import Hypothesis, Utterance
from rescorer.sentence_scoring import score_sentences
from rescorer.wer.bootstrap import paired_bootstrap
from rescorer.wer.counts import pairwise_errors

WEIGHTS = [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0]  # w = 0: the first pass alone
ACOUSTIC_SCALES = [1 / 8, 1 / 10, 1 / 12, 1 / 14, 1 / 16, 1 / 18]
PENALTIES = [-3.0, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0]
TUNING_EXPANSION = (0.5, 1 / 12)  # (w, a) the tuning half's lattices are expanded at


def join_clitics(tokens: list[str]) -> str:
    out: list[str] = []
    for token in tokens:
        if out and (token.startswith("'") or token == "n't"):
            out[-1] += token
        else:
            out.append(token)
    return " ".join(out)


def lm_form(token: str) -> str:
    """A token in PTB's conventions, on its own (see the module docstring)."""
    if _is_number(token) and token not in UNITS:
        return "N"
    return "mr." if token == "mister" else token


def hub1_token_lists(data_dir: Path) -> list[Utterance]:
    """The lists with per-token scores, in nbest.jsonl.gz's order; checked against its texts and sums."""
    derived = read_nbest(NbestSource(str(data_dir / "wsj-hub1-nbest" / "nbest.jsonl.gz")))
    utterances = []
    with tarfile.open(data_dir / "wsj-hub1-nbest" / "raw" / "wsj_n_bst.tar.gz") as tar:
        files = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}

        def lines(name: str) -> list[str]:
            return tar.extractfile(files[name]).read().decode().splitlines()

        for utt in derived:
            texts, acc, llm = lines(utt.utt_id), lines(utt.utt_id + ".acc"), lines(utt.utt_id + ".llm")
            hyps = []
            for n, (text, a_line, l_line, given) in enumerate(zip(texts, acc, llm, utt.hyps, strict=True), 1):
                tokens = text.split()
                am, lm = [float(v) for v in a_line.split()], [float(v) for v in l_line.split()]
                where = f"{utt.utt_id} hypothesis {n}"
                if not (len(am) == len(lm) == len(tokens) + 1):
                    raise ValueError(f"{where}: {len(tokens)} tokens, {len(am)} acoustic and {len(lm)} LM columns")
                if join_clitics(tokens) != given.text or not math.isclose(sum(am), given.am_score, abs_tol=0.05) \
                        or not math.isclose(sum(lm), given.lm_score, abs_tol=1e-3):
                    raise ValueError(f"{where}: the raw columns do not give nbest.jsonl.gz's text and sums")
                hyps.append(Hypothesis(" ".join(tokens), sum(am), sum(lm),
                                       extra={"word_am_scores": am, "word_lm_scores": lm}))
            utterances.append(Utterance(utt.utt_id, hyps, utt.ref))
    return utterances


def grid():
    return list(itertools.product(WEIGHTS, ACOUSTIC_SCALES, PENALTIES))


def nbest_costs(utterances, nnlm):
    """Per utterance, (G, LM, A, T) arrays over its hypotheses."""
    out, row = [], 0
    for utt in utterances:
        n = len(utt.hyps)
        g = np.array([-h.lm_score for h in utt.hyps])
        a = np.array([-h.am_score for h in utt.hyps])
        t = np.array([len(h.words) for h in utt.hyps], dtype=np.float64)
        out.append((g, nnlm[row:row + n], a, t))
        row += n
    return out


def nbest_choice(costs, point) -> list[int]:
    w, a, p = point
    return [int(np.argmin((1 - w) * g + w * lm + a * ac + p * t)) for g, lm, ac, t in costs]


class ErrorCache:
    """Errors of a token sequence against an utterance's reference, computed once."""

    def __init__(self, utterances) -> None:
        self.refs = [u.ref for u in utterances]
        self.cache: dict[tuple[int, tuple[str, ...]], int] = {}

    def __call__(self, i: int, tokens: list[str]) -> int:
        key = (i, tuple(tokens))
        if key not in self.cache:
            self.cache[key] = int(pairwise_errors([self.refs[i]], [join_clitics(tokens)])[0])
        return self.cache[key]


def run_fold(artifact, utterances, lattices, words, symbols, costs, errors, dev, test, orders, beam_option):
    """Weights tuned on `dev`, errors on `test`, for the first pass, N-best and each lattice order."""
    test_sentences = [[lm_form(t) for t in h.words] for i in test for h in utterances[i].hyps]
    started = time.perf_counter()
    score_sentences(artifact, test_sentences)
    nbest_seconds = time.perf_counter() - started

    def nbest_errors(indices, point) -> np.ndarray:
        chosen = nbest_choice([costs[i] for i in indices], point)
        return np.array([errors(i, utterances[i].hyps[c].words) for i, c in zip(indices, chosen, strict=True)])

    def tuned(score, points) -> tuple:
        return min(points, key=lambda point: (score(point), point))

    points = grid()
    first_pass_point = tuned(lambda pt: nbest_errors(dev, pt).sum(), [pt for pt in points if pt[0] == 0])
    nbest_point = tuned(lambda pt: nbest_errors(dev, pt).sum(), points)
    results = {"first pass": {"weights": first_pass_point, "errors": nbest_errors(test, first_pass_point)},
               "N-best": {"weights": nbest_point, "errors": nbest_errors(test, nbest_point),
                          "seconds": nbest_seconds, "hypotheses": len(test_sentences)}}
    words_of = sum(len(utterances[i].ref.split()) for i in test)
    print(f"first pass {results['first pass']['errors'].sum() / words_of:.4f}  N-best"
          f" {results['N-best']['errors'].sum() / words_of:.4f} (weights {nbest_point})", flush=True)
    for order in orders:
        beam = math.inf if order == 0 or beam_option == 0 else beam_option
        name = "lattice, exact" if order == 0 else f"lattice, order {order}"
        w0, a0 = TUNING_EXPANSION
        options = RescoreOptions(weight=w0, ngram_order=order, acoustic_scale=a0, beam=beam)
        expanded = [expand_lattice(artifact, lattices[i], symbols, options) for i in dev]
        tally: dict[tuple, int] = {}
        for w in WEIGHTS:
            mixed = [e.interpolated(w) for e in expanded]
            for a, p in itertools.product(ACOUSTIC_SCALES, PENALTIES):
                tally[(w, a, p)] = sum(errors(i, [words[x] for x in best_path(lat, a, 1.0, p).words])
                                       for i, lat in zip(dev, mixed, strict=True))
        point = tuned(tally.__getitem__, points)
        w, a, p = point
        started = time.perf_counter()
        rescored = [expand_lattice(artifact, lattices[i], symbols, RescoreOptions(weight=w, ngram_order=order,
                                                                                   acoustic_scale=a, beam=beam))
                    for i in test]
        seconds = time.perf_counter() - started
        errs = np.array([errors(i, [words[x] for x in best_path(e.interpolated(w), a, 1.0, p).words])
                         for i, e in zip(test, rescored, strict=True)])
        results[name] = {"ngram_order": order, "beam": beam, "weights": point, "errors": errs, "seconds": seconds,
                         "input_arcs": sum(lattices[i].num_arcs for i in test),
                         "expanded_arcs": sum(e.num_arcs for e in rescored)}
        print(f"{name}: WER {errs.sum() / words_of:.4f} (weights {point}), {seconds:.1f} s,"
              f" {results[name]['expanded_arcs']} expanded arcs", flush=True)
    return test, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--model", type=Path, default=Path("runs/ptb-lm/artifact"))
    parser.add_argument("--out", type=Path, default=Path("runs/hub1-lattices"))
    parser.add_argument("--orders", type=int, nargs="+", default=[2, 3, 4, 0])
    parser.add_argument("--beam", type=float, default=RescoreOptions().beam, help="for orders > 0 (0: no pruning)")
    args = parser.parse_args()
    artifact = load_artifact(args.model)
    utterances = hub1_token_lists(args.data_dir)
    word_ids = {"<eps>": 0}
    lattices = [lattice_from_nbest(u, word_ids) for u in utterances]
    words = {i: w for w, i in word_ids.items()}
    symbols = tuple(lm_form(words[i]) if i else "<eps>" for i in range(len(words)))
    paths = [count_paths(lat) for lat in lattices]
    sizes = [len(u.hyps) for u in utterances]
    errors = ErrorCache(utterances)
    sentences = [[lm_form(t) for t in h.words] for u in utterances for h in u.hyps]
    costs = nbest_costs(utterances, -score_sentences(artifact, sentences).log_probs)
    even, odd = list(range(0, len(utterances), 2)), list(range(1, len(utterances), 2))
    folds = {"even -> odd": run_fold(artifact, utterances, lattices, words, symbols, costs, errors, even, odd,
                                     args.orders, args.beam),
             "odd -> even": run_fold(artifact, utterances, lattices, words, symbols, costs, errors, odd, even,
                                     args.orders, args.beam)}
    ref_words = np.array([len(u.ref.split()) for u in utterances])
    document = {
        "settings": {"model": str(args.model), "data_dir": str(args.data_dir), "beam": args.beam,
                     "grid": {"w": WEIGHTS, "a": ACOUSTIC_SCALES, "p": PENALTIES},
                     "tuning_expansion": TUNING_EXPANSION},
        "utterances": len(utterances), "ref_words": int(ref_words.sum()),
        "hypotheses_per_list": {"mean": float(np.mean(sizes)), "max": int(max(sizes))},
        "paths_per_lattice": {"mean": float(np.mean(paths)), "median": float(np.median(paths)),
                              "max": int(max(paths)), "mean_ratio_to_n": float(np.mean(np.divide(paths, sizes)))},
        "oracle_wer": float(sum(min(errors(i, h.words) for h in u.hyps) for i, u in enumerate(utterances))
                            / ref_words.sum()),
        "folds": {}, "pooled": {},
    }
    for fold_name, (test, results) in folds.items():
        words_of = ref_words[test]
        base = results["N-best"]["errors"]
        rows = {}
        for name, row in results.items():
            entry = {k: v for k, v in row.items() if k != "errors"}
            entry["wer"] = float(row["errors"].sum() / words_of.sum())
            other = results["first pass"]["errors"] if name == "N-best" else base
            if name != "first pass":
                entry["vs_first_pass" if name == "N-best" else "vs_nbest"] = paired_bootstrap(
                    other, row["errors"], words_of).to_dict()
            if "expanded_arcs" in row:
                entry["input_arcs_per_second"] = row["input_arcs"] / row["seconds"]
                entry["seconds_vs_nbest"] = row["seconds"] / results["N-best"]["seconds"]
            rows[name] = entry
        document["folds"][fold_name] = {"test_utterances": len(test), "test_ref_words": int(words_of.sum()),
                                        "systems": rows}
    # both test halves together: every utterance tested once, by the weights of the other half
    pooled = {}
    for name in folds["even -> odd"][1]:
        pooled[name] = np.zeros(len(utterances), dtype=np.int64)
        for test, results in folds.values():
            pooled[name][test] = results[name]["errors"]
    for name, errs in pooled.items():
        entry = {"wer": float(errs.sum() / ref_words.sum())}
        if name == "N-best":
            entry["vs_first_pass"] = paired_bootstrap(pooled["first pass"], errs, ref_words).to_dict()
        elif name != "first pass":
            entry["vs_nbest"] = paired_bootstrap(pooled["N-best"], errs, ref_words).to_dict()
        document["pooled"][name] = entry
    write_json(args.out / "results.json", document)
    for name, entry in document["pooled"].items():
        print(f"pooled {name}: WER {entry['wer']:.4f}")
    print(f"paths per lattice: mean {document['paths_per_lattice']['mean']:.1f} against N"
          f" {document['hypotheses_per_list']['mean']:.1f}; results in {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
