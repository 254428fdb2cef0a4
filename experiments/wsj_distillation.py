"""WSJ rescoring with the PTB teachers and students, as paper 2 Table 4.

    python experiments/wsj_distillation.py --data-dir ../shared/data --models runs/ptb-distill --out runs/wsj
    python experiments/wsj_distillation.py --lists hub1 --models runs/ptb-distill --out runs/wsj-hub1

--lists hub1: the 213 WSJ HUB-1 lists of an n-gram first pass (`wsj-hub1-nbest`, acoustic and
first-pass LM scores per hypothesis), the LM reading each hypothesis's Penn-Treebank `tokens`
through `to_ptb`; each LM interpolated with the first-pass LM (every weight tuned), and the
baseline is the first-pass LM alone (our LM's score 0). The rest as below.

Lists: HyPoradise `test_wsj_score` (836 utterances of WSJ read speech, 5 hypotheses each, with a
length-normalized log-probability `score`, used as the acoustic score; PTB is WSJ text).
Hypotheses are brought to PTB's conventions for the LM only (`to_ptb`; WER is computed on the
text as given): punctuation stripped from word edges (`$one` -> `one`, `thousand,` -> `thousand`),
`mister` -> `mr.`, a run of spoken number words -> `N` (a single `one` .. `nine` stays a word, as
PTB writes them), and `'s`, `'re`, `'ve`, `'ll`, `'d`, `'m`, `n't` split off as PTB does; words
outside PTB's 10k vocabulary are scored as `<unk>`.
Weights by two-fold cross-validation: fold A = the even-numbered utterances (file order), fold
B = the odd ones; tuned on A and applied to B, tuned on B and applied to A, the two test halves
pooled (`experiments.wsj_adaptation.cross_validated`, with `rescorer.tuning`, which finds the
scale of the scores itself). WER of the first pass, each member, the ensemble (token by token:
the log of the members' mean probability), every student of experiments/ptb_distillation.py
that has finished, and the baseline every LM must beat: the weights tuned with our LM's score
held at 0 (on HyPoradise the word penalty alone; on HUB-1 the first-pass LM alone), with the
oracle; paired-bootstrap intervals against the first pass, against that baseline, and between
models (COMPARISONS: students against each other, the members and the ensemble); parameters;
scoring speed (hypotheses/s through `score_sentences` on all lists, every model timed in this
run, best of --repeats); each LM's perplexity on the lists' references in PTB's conventions
(<unk> counted). Students trained once per seed (OUT/{row}-seed{s}, `ptb_distillation.py
--seeds`) are rows per seed ("TR student seed 1"), summarized in `seeded_students` (WER and
reference perplexity per seed, mean and sd) and compared in `seeded_between_students` (the
WER difference in points per seed, its mean and 95 % t interval over the seeds). Results to
OUT/results.json.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.adaptation_runs import write_json
from experiments.ptb_distillation import ensemble_log_probs, parameters
from experiments.seed_statistics import mean_sd, paired_difference
from experiments.wsj_adaptation import cross_validated
from rescorer.artifact import Artifact, load_artifact
from rescorer.combination import build_arrays
from rescorer.formats.reader import NbestSource, read_nbest
from rescorer.sentence_scoring import score_sentences
from rescorer.tuning import SearchSpace, word_unit
from rescorer.wer.bootstrap import paired_bootstrap
from rescorer.wer.nbest_evaluation import error_table, oracle_hypotheses

UNITS = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}
NUMBER_WORDS = UNITS | {"ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
                        "eighteen", "nineteen", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty",
                        "ninety", "hundred", "thousand", "point"}
CLITICS = ("n't", "'s", "'re", "'ve", "'ll", "'d", "'m")
NO_LM = "no LM (word penalty only)"
MODELS = {"member 1": "member1", "member 2": "member2", "member 3": "member3",
          "CE only student": "ce_dropout", "NCE alone student": "nce_dropout", "TR student": "tr",
          "TR student, dropout": "tr_dropout", "KL only student": "kl", "interp 0.5 student": "interp_0.5",
          "interp 0.2 student": "interp_0.2", "interp 0.1 student": "interp_0.1", "nce-tr student": "nce_tr"}
# paired differences reported beside the table: (baseline, model)
COMPARISONS = (("CE only student", "TR student"), ("KL only student", "TR student"),
               *(("KL only student", f"interp {a} student") for a in ("0.5", "0.2", "0.1")),
               ("CE only student", "KL only student"), ("TR student", "nce-tr student"),
               ("CE only student", "nce-tr student"), ("NCE alone student", "nce-tr student"),
               ("member 1", "TR student"), ("member 2", "TR student"), ("member 1", "nce-tr student"),
               ("member 2", "nce-tr student"), ("ensemble", "TR student"), ("ensemble", "nce-tr student"))


def _is_number(token: str) -> bool:
    return bool(token) and all(part in NUMBER_WORDS for part in token.split("-"))


def to_ptb(words: list[str]) -> list[str]:
    """A hypothesis in PTB's conventions (see the module docstring)."""
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            out.append(run[0] if len(run) == 1 and run[0] in UNITS else "N")
            run.clear()

    for raw in words:
        word = raw.strip(",.;:!?\"$()")
        if not word:
            continue
        if _is_number(word) and not (word == "point" and not run):
            run.append(word)
            continue
        flush()
        word = "mr." if word == "mister" else word
        clitic = next((c for c in CLITICS if word.endswith(c) and len(word) > len(c)), None)
        out.extend([word[: -len(clitic)], clitic] if clitic else [word])
    flush()
    return out


def score_models(artifacts: dict[str, Artifact], sentences: list[list[str]], repeats: int) -> tuple[dict, dict]:
    """Per-token log-probs of every hypothesis for each model, and its best scoring time."""
    scores, seconds = {}, {}
    for _ in range(repeats):  # interleaved: every model once per round
        for name, artifact in artifacts.items():
            start = time.perf_counter()
            result = score_sentences(artifact, sentences, per_token=True)
            elapsed = time.perf_counter() - start
            seconds[name] = min(seconds.get(name, math.inf), elapsed)
            scores[name] = result
    return scores, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--models", type=Path, default=Path("runs/ptb-distill"))
    parser.add_argument("--out", type=Path, default=Path("runs/wsj"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--lists", choices=["hyporadise", "hub1"], default="hyporadise")
    parser.add_argument("--no-unk-penalty", action="store_true",
                        help="do not tune a penalty per word our LM reads as <unk> (the first-pass LM's weights only)")
    args = parser.parse_args()
    if args.lists == "hub1":
        utterances = read_nbest(NbestSource(str(args.data_dir / "wsj-hub1-nbest" / "nbest.jsonl.gz")))
        sentences = [to_ptb(str(h.extra.get("tokens", h.text)).split()) for u in utterances for h in u.hyps]
    else:
        utterances = read_nbest(NbestSource(str(args.data_dir / "hyporadise-v0" / "test" / "test_wsj_score.json.gz"),
                                            "hyporadise"))
        sentences = [to_ptb(h.words) for u in utterances for h in u.hyps]
    named = finished_models(args.models)
    artifacts = {name: load_artifact(path) for name, path in named.items()}
    scores, seconds = score_models(artifacts, sentences, args.repeats)
    members = [n for n in named if n.startswith("member")]
    nnlm = {name: s.log_probs for name, s in scores.items()}
    oov = scores[next(iter(scores))].num_oov
    if len(members) > 1:  # the ensemble: per token, the log of the members' mean probability
        nnlm["ensemble"] = ensemble_log_probs([scores[m].token_log_probs for m in members])
        seconds["ensemble"] = sum(seconds[m] for m in members)
    # each LM's perplexity on the lists' references (in PTB's conventions, every token counted,
    # <unk> included, as paper 2 Table 4's perplexity column), the ensemble's token by token
    references = [to_ptb(u.ref.split()) for u in utterances if u.ref is not None]
    on_references = {name: score_sentences(artifact, references, per_token=True) for name, artifact in artifacts.items()}
    reference_tokens = sum(len(t) for t in next(iter(on_references.values())).token_log_probs) if named else 0
    reference_log_prob = {name: float(r.log_probs.sum()) for name, r in on_references.items()}
    if len(members) > 1:
        reference_log_prob["ensemble"] = float(ensemble_log_probs([on_references[m].token_log_probs
                                                                   for m in members]).sum())
    # the baseline every LM must beat: the weights tuned with no LM score at all (the word
    # penalty alone moves the length-normalized lists' WER)
    no_lm = NO_LM if args.lists == "hyporadise" else "first-pass LM only (no LM of ours)"
    nnlm[no_lm] = np.zeros(len(sentences))

    table = error_table(utterances)
    first = table.hyp_errors[np.cumsum([0] + [len(u.hyps) for u in utterances])[:-1]]
    # The first-pass-LM-only row is our LM held at weight 0 (on HUB-1 the interpolation weight,
    # so that every other weight is tuned as for the LMs).
    baseline_space = SearchSpace(fixed={"interp_weight": 0.0}) if args.lists == "hub1" else None
    rows, chosen_errors = {}, {}
    for name, values in nnlm.items():
        arrays = build_arrays(utterances, values, oov)
        # our LM knows PTB's 10k words only, so a score for each word it read as <unk> is tuned
        # too (the first-pass LM knows them; without it <unk>, a frequent PTB token, favours them)
        space = (baseline_space if name == no_lm else None if args.no_unk_penalty
                 else SearchSpace(ranges={"oov_penalty": (0.0, 1000.0 * word_unit(arrays))}))
        errors, weights = cross_validated(arrays, table, space)
        chosen_errors[name] = errors
        rows[name] = {"wer": float(errors.sum() / table.ref_words.sum()), "weights_per_fold": weights,
                      "vs_first_pass": paired_bootstrap(first, errors, table.ref_words).to_dict(),
                      "hyps_per_second": len(sentences) / seconds[name] if name != no_lm else None,
                      "reference_ppl": (math.exp(-reference_log_prob[name] / reference_tokens)
                                        if name in reference_log_prob else None),
                      "parameters": (sum(parameters(named[m]) for m in members) if name == "ensemble"
                                     else 0 if name == no_lm else parameters(named[name]))}
    for name in rows:
        if name != no_lm:
            rows[name]["vs_no_lm"] = paired_bootstrap(chosen_errors[no_lm], chosen_errors[name], table.ref_words).to_dict()
    arrays = build_arrays(utterances, np.zeros(len(sentences)), oov)
    oracle = table.hyp_errors[oracle_hypotheses(arrays, table.hyp_errors)]
    between = {}
    for a, b in COMPARISONS:
        if a in chosen_errors and b in chosen_errors:
            between[f"{b} - {a}"] = paired_bootstrap(chosen_errors[a], chosen_errors[b], table.ref_words).to_dict()
    seeded = seed_summary(rows)
    document = {"settings": {k: str(v) for k, v in vars(args).items()}, "utterances": len(utterances),
                "hypotheses": len(sentences), "ref_words": int(table.ref_words.sum()),
                "first_pass_wer": float(first.sum() / table.ref_words.sum()),
                "oracle_wer": float(oracle.sum() / table.ref_words.sum()),
                "lm_oov_tokens": int(oov.sum()), "lm_tokens": int(sum(len(s) for s in sentences)),
                "reference_tokens": reference_tokens,
                "models": rows, "between_students": between, "seeded_students": seeded,
                "seeded_between_students": seeded_comparisons(rows)}
    write_json(args.out / "results.json", document)
    print(f"first pass {document['first_pass_wer']:.2%}  oracle {document['oracle_wer']:.2%}  (changes against"
          f" {'the first pass' if args.lists == 'hyporadise' else 'the first-pass LM only row; its own against the first pass'})")
    for name, row in rows.items():
        b = row["vs_first_pass"] if args.lists == "hyporadise" or name == no_lm else row["vs_no_lm"]
        speed = "" if row["hyps_per_second"] is None else f"{row['hyps_per_second']:8.0f} hyps/s"
        speed += "" if row["reference_ppl"] is None else f"  reference ppl {row['reference_ppl']:.1f}"
        print(f"{name:28s} WER {row['wer']:.2%}  change {b['delta']:+.2%} [{b['low']:+.2%}, {b['high']:+.2%}]"
              f"  {row['parameters']:9d} params  {speed}")
    for name, b in between.items():
        print(f"{name}: {b['delta']:+.2%} [{b['low']:+.2%}, {b['high']:+.2%}]")
    for name, row in seeded.items():
        sd = "" if row["wer_sd"] is None else f" +- {row['wer_sd']:.2%}"
        print(f"{name:28s} WER {row['wer_mean']:.2%}{sd} over seeds {row['seeds']}")
    for p in document["seeded_between_students"]:
        low, high = p["interval_points"] or (math.nan, math.nan)
        print(f"{p['row']} - {p['against']}: {p['mean_points']:+.2f} points [{low:+.2f}, {high:+.2f}]"
              f" over seeds {p['seeds']}")


def finished_models(models: Path) -> dict[str, Path]:
    """Every finished model of experiments/ptb_distillation.py in `models`: MODELS's runs, and a
    student run once per seed (OUT/{run}-seed{s}) as "{name} seed {s}"."""
    named = {}
    for name, run in MODELS.items():
        if (models / run / "artifact" / "config.json").exists():
            named[name] = models / run / "artifact"
        for artifact in sorted(models.glob(f"{run}-seed*/artifact"), key=lambda p: _seed_of(p.parent.name)):
            if (artifact / "config.json").exists() and _seed_of(artifact.parent.name) is not None:
                named[f"{name} seed {_seed_of(artifact.parent.name)}"] = artifact
    return named


def _seed_of(run: str) -> int | None:
    tail = run.rsplit("-seed", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _by_seed(rows: dict, name: str, field: str) -> dict[int, float]:
    prefix = f"{name} seed "
    return {int(n[len(prefix):]): r[field] for n, r in rows.items()
            if n.startswith(prefix) and n[len(prefix):].isdigit() and r.get(field) is not None}


def seed_summary(rows: dict) -> dict[str, dict]:
    """Per student run with seeds: its WER and reference perplexity per seed, their mean and sd."""
    summary = {}
    for name in MODELS:
        wer = _by_seed(rows, name, "wer")
        if wer:
            ppl = _by_seed(rows, name, "reference_ppl")
            stats = mean_sd(list(wer.values()))
            summary[name] = {"seeds": sorted(wer), "wer_by_seed": wer, "wer_mean": stats["mean"], "wer_sd": stats["sd"],
                             "reference_ppl_by_seed": ppl, "reference_ppl_mean": mean_sd(list(ppl.values()))["mean"]}
    return summary


def seeded_comparisons(rows: dict) -> list[dict]:
    """COMPARISONS between seeded students: the WER difference in points per seed (the same seed:
    the same initialization and batches), its mean and 95 % t interval over the seeds."""
    paired = []
    for against, row in COMPARISONS:
        difference = paired_difference(_by_seed(rows, row, "wer"), _by_seed(rows, against, "wer"), 100.0, "points")
        if difference is not None:
            paired.append({"row": row, "against": against, **difference})
    return paired


if __name__ == "__main__":
    main()
