"""ATIS: a general LM adapted to air-travel queries with NCE+KLD, and real word error rates.

    python experiments/atis_adaptation.py --data-dir ../shared/data --out runs/atis

Data (HyPoradise v0: real 5-best lists of ATIS with `am_score`, plus WikiText-2):
1. The `train_atis` records, sorted by id and shuffled with a fixed seed (--seed 1); the first
   10 % (396 utterances) are held out: their 5-best lists are the dev lists on which the
   rescoring weights are tuned, their references the in-domain (ID) dev text. The references
   of the other 90 % are the ID training text. The 809 `test_atis` lists are the test set.
2. WikiText-2 train/valid brought to the lists' conventions (training/text_normalization.py,
   then lower case, as the ATIS transcripts are).
3. One vocabulary for every model: every word of WikiText-2 train and of the ID training text,
   so the general model already covers the ATIS training references.
Models (all NCE, 1 x 256 LSTM, embedding 256, sized for 2 CPU cores):
- General: WikiText-2 only (scheduled on WikiText-2 valid);
- ID: the ID training text only;
- OOD+ID: WikiText-2, then the ID text, seen last in every batch column (`--train wt2 --train
  id`, training.batches.ordered_stream), scheduled on ID dev;
- Fine-Tune: init General, trained on ID, learning rate chosen on ID dev (gamma = 1);
- KLD: init and reference General, Fine-Tune's learning rate, gamma chosen on ID dev perplexity
  (the product's own case: a general model adapted without retraining it on in-domain data);
- Fine-Tune from OOD+ID and KLD from OOD+ID: paper 1's protocol, init and reference the
  OOD+ID model, the same learning rates, gamma chosen on ID dev from --gammas and 1.
Rescoring: each LM's weights tuned on the dev lists and applied to the test lists
(`rescorer.eval_command`, the code behind `rescorer eval`). `am_score` is a length-normalized
log-probability (per output token of the end-to-end model), so it is used as given with
am_weight 1: our LM's sentence log-probability gets a small weight (the tuner searches LM
weights from 0.001 to 1,000) and the word penalty, tuned with it, takes up what the
normalization does to length.
Paired-bootstrap 95 % intervals: each LM against the first pass (in the reports) and KLD against
Fine-Tune (computed here from the per-utterance errors). Everything to OUT/results.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.adaptation_runs import evaluation, plot_gamma, run, train_seconds, write_json
from rescorer.artifact import load_artifact
from rescorer.atomic import write_text_atomic
from rescorer.combination import best_hypotheses, build_arrays, total_scores
from rescorer.eval_command import run_evaluation
from rescorer.formats.reader import NbestSource, read_nbest
from rescorer.tuning import SearchSpace, tune_weights
from rescorer.vocab import build_vocabulary
from rescorer.wer.bootstrap import paired_bootstrap
from rescorer.wer.nbest_evaluation import ErrorTable, error_table
from training.config import TrainConfig
from training.corpus import count_words
from training.text_normalization import wikitext_to_librispeech


def write_atis_split(data_dir: Path, paths: dict[str, Path], seed: int) -> None:
    """The `train_atis` records sorted by id and shuffled with `seed`: the first 10 % to
    paths["dev_lists"] (their 5-best lists) and paths["id_dev"] (their references), the
    references of the rest to paths["id_train"]."""
    with gzip.open(data_dir / "hyporadise-v0" / "train" / "train_atis.json.gz", "rt", encoding="utf-8") as f:
        records = sorted(json.load(f), key=lambda r: r["id"])
    random.Random(seed).shuffle(records)
    held_out = round(len(records) * 0.1)
    dev, train = records[:held_out], records[held_out:]
    write_text_atomic(paths["id_train"], "\n".join(r["output"] for r in train) + "\n")
    write_text_atomic(paths["id_dev"], "\n".join(r["output"] for r in dev) + "\n")
    temporary = paths["dev_lists"].with_suffix(".tmp")  # whole or absent: its presence marks a finished split
    with gzip.open(temporary, "wt", encoding="utf-8") as f:
        json.dump(dev, f)
    temporary.replace(paths["dev_lists"])


def prepare(data_dir: Path, out: Path, seed: int) -> dict[str, Path]:
    text = out / "text"
    paths = {name: text / f"{name}.txt" for name in ("wt2_train", "wt2_valid", "id_train", "id_dev", "ood_id_train")}
    paths["dev_lists"] = text / "dev_atis.json.gz"
    paths["vocab"] = text / "words.txt"
    if paths["vocab"].exists():
        return paths
    for name in ("train", "valid"):
        with gzip.open(data_dir / "wikitext-2" / f"{name}.txt.gz", "rt", encoding="utf-8") as f:
            lines = [s.lower() for s in wikitext_to_librispeech(f)]
        write_text_atomic(paths[f"wt2_{name}"], "\n".join(lines) + "\n")
    write_atis_split(data_dir, paths, seed)
    write_text_atomic(paths["ood_id_train"], paths["wt2_train"].read_text() + paths["id_train"].read_text())
    counts = count_words([paths["wt2_train"], paths["id_train"]])
    write_text_atomic(paths["vocab"], build_vocabulary(counts, None, min_count=1).to_text())
    return paths


def per_utterance_errors(report: dict, first_errors: np.ndarray, utt_ids: list[str]) -> np.ndarray:
    """Errors of the rescored 1-best of each utterance: the first pass's unless it changed."""
    errors = first_errors.copy()
    position = {u: i for i, u in enumerate(utt_ids)}
    for change in report["evaluation"]["changes"]:
        errors[position[change["utt_id"]]] = change["errors_after"]
    return errors


@dataclass(frozen=True)
class AtisTestLists:
    """The ATIS dev lists (for tuning) and the 809 test lists, with what every row is set against."""

    dev_source: NbestSource
    test_source: NbestSource
    utterances: list  # the test lists, read
    table: ErrorTable
    first_errors: np.ndarray  # per test utterance, the first hypothesis's errors
    utt_ids: list[str]

    @classmethod
    def read(cls, data_dir: Path, dev_lists: Path) -> AtisTestLists:
        test_source = NbestSource(str(data_dir / "hyporadise-v0" / "test" / "test_atis.json.gz"), "hyporadise")
        utterances = read_nbest(test_source)
        table = error_table(utterances)
        offsets = np.cumsum([0] + [len(u.hyps) for u in utterances])
        return cls(NbestSource(str(dev_lists), "hyporadise"), test_source, utterances, table,
                   table.hyp_errors[offsets[:-1]], [u.utt_id for u in utterances])

    def rescore(self, artifact_path: Path, report_dir: Path) -> tuple[dict, dict, np.ndarray]:
        """Weights tuned on dev, the test lists rescored (`rescorer eval`): its document, the test
        set's report and the per-utterance errors of the chosen hypotheses."""
        document = run_evaluation(load_artifact(artifact_path), self.dev_source, [self.test_source], report_dir,
                                  progress=False)
        test = document["sets"][0]
        return document, test, per_utterance_errors(test, self.first_errors, self.utt_ids)


def _no_lm_row(dev_source: NbestSource, test_utterances, table) -> tuple[dict, np.ndarray]:
    """Tune only the word penalty (LM weight 0) on dev; the test WER and per-utterance errors."""
    dev = read_nbest(dev_source)
    dev_table = error_table(dev)
    dev_arrays = build_arrays(dev, np.zeros(sum(len(u.hyps) for u in dev)), np.zeros(sum(len(u.hyps) for u in dev), dtype=np.int64))
    weights = tune_weights(dev_arrays, dev_table.hyp_errors, dev_table.ref_words,
                           SearchSpace(fixed={"lm_weight": 0.0})).weights
    n = sum(len(u.hyps) for u in test_utterances)
    arrays = build_arrays(test_utterances, np.zeros(n), np.zeros(n, dtype=np.int64))
    chosen = best_hypotheses(arrays, total_scores(arrays, weights))
    errors = table.hyp_errors[chosen]
    return {"word_penalty": weights.word_penalty, "test_wer": float(errors.sum() / table.ref_words.sum())}, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("runs/atis"))
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=10, help="epoch budget of the models trained on WikiText-2")
    parser.add_argument("--id-epochs", type=int, default=25, help="epoch budget of ID, Fine-Tune and KLD")
    parser.add_argument("--ft-lrs", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.4])
    parser.add_argument("--gammas", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 0.9])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", choices=["models", "ood_id", "report"],
                        help="one part (to run the two long trainings as two processes): models = General,"
                             " ID, Fine-Tune, KLD; ood_id = OOD+ID; report = the WER table (trains what is missing)")
    args = parser.parse_args()
    paths = prepare(args.data_dir, args.out, args.seed)
    common = dict(embedding_dim=args.hidden, hidden_dim=args.hidden, num_layers=1, batch_size=args.batch_size,
                  loss="nce", seed=args.seed)
    id_dev = str(paths["id_dev"])

    def scratch(name: str, train_text: Path, dev: str, epochs: int) -> Path:
        return run(TrainConfig(train_path=str(train_text), dev_path=dev, out_dir=str(args.out / name),
                               vocab_path=str(paths["vocab"]), max_epochs=epochs, **common))

    def adapt(name: str, init: Path, lr: float, gamma: float) -> Path:
        return run(TrainConfig(train_path=str(paths["id_train"]), dev_path=id_dev, out_dir=str(args.out / name),
                               init_path=str(init), reference_path=str(init) if gamma < 1 else None,
                               gamma=gamma, lr=lr, max_epochs=args.id_epochs, **common))

    def ood_id() -> Path:  # WikiText-2 first, the in-domain text last in every column
        return run(TrainConfig(train_path=str(paths["wt2_train"]), later_train_paths=(str(paths["id_train"]),),
                               dev_path=id_dev, out_dir=str(args.out / "ood_id_ordered"),
                               vocab_path=str(paths["vocab"]), max_epochs=args.epochs, **common))

    if args.only == "ood_id":
        ood_id()
        return
    models = {"General": scratch("general", paths["wt2_train"], str(paths["wt2_valid"]), args.epochs),
              "ID": scratch("id", paths["id_train"], id_dev, args.id_epochs)}
    ft_runs = {lr: adapt(f"ft_lr{lr:g}", models["General"], lr, 1.0) for lr in args.ft_lrs}
    ft_dev = {lr: evaluation(a, paths["id_dev"], "id_dev")["normalized_ppl"] for lr, a in ft_runs.items()}
    ft_lr = min(ft_dev, key=ft_dev.get)
    kld_runs = {g: adapt(f"kld_g{g:g}", models["General"], ft_lr, g) for g in args.gammas}
    kld_runs[1.0] = ft_runs[ft_lr]
    kld_dev = {g: evaluation(a, paths["id_dev"], "id_dev")["normalized_ppl"] for g, a in kld_runs.items()}
    best_gamma = min(kld_dev, key=kld_dev.get)
    if args.only == "models":
        return
    models["OOD+ID"] = ood_id()
    models["Fine-Tune"] = ft_runs[ft_lr]
    models["KLD"] = kld_runs[best_gamma]
    # paper 1's protocol: Fine-Tune and KLD start from OOD+ID, which is also KLD's reference
    from_ood = {g: adapt(f"ood_id_kld_g{g:g}", models["OOD+ID"], ft_lr, g) for g in [*args.gammas, 1.0]}
    from_ood_dev = {g: evaluation(a, paths["id_dev"], "id_dev")["normalized_ppl"] for g, a in from_ood.items()}
    from_ood_gamma = min((g for g in from_ood_dev if g < 1.0), key=from_ood_dev.get)
    models["Fine-Tune from OOD+ID"] = from_ood[1.0]
    models["KLD from OOD+ID"] = from_ood[from_ood_gamma]

    lists = AtisTestLists.read(args.data_dir, paths["dev_lists"])
    test_utterances, table = lists.utterances, lists.table
    rows, errors = {}, {}
    for name, artifact_path in models.items():
        report_dir = args.out / "reports" / name.lower().replace("+", "_").replace("-", "_")
        document, test, errors[name] = lists.rescore(artifact_path, report_dir)
        rows[name] = {"artifact": str(artifact_path), "weights": document["weights"],
                      "dev_wer": document["tuning"]["dev_wer"], "test": test["evaluation"] | {"changes": None},
                      "id_dev": evaluation(artifact_path, paths["id_dev"], "id_dev"),
                      "train_seconds": train_seconds(artifact_path)}
        e = test["evaluation"]
        print(f"{name:10s} test WER {e['rescored']['wer']:.2%} (first pass {e['first_pass']['wer']:.2%},"
              f" oracle {e['oracle']['wer']:.2%}) change {e['bootstrap']}", flush=True)
    kld_vs_ft = paired_bootstrap(errors["Fine-Tune"], errors["KLD"], table.ref_words, 1000)
    paper_way = {"kld_gamma": from_ood_gamma, "id_dev_ppl": {str(g): v for g, v in from_ood_dev.items()},
                 "kld_minus_fine_tune": paired_bootstrap(errors["Fine-Tune from OOD+ID"], errors["KLD from OOD+ID"],
                                                         table.ref_words, 1000).to_dict(),
                 "kld_minus_id": paired_bootstrap(errors["ID"], errors["KLD from OOD+ID"],
                                                  table.ref_words, 1000).to_dict(),
                 "kld_minus_ood_id": paired_bootstrap(errors["OOD+ID"], errors["KLD from OOD+ID"],
                                                      table.ref_words, 1000).to_dict()}
    # the acoustic score with a tuned word penalty and no LM: what each LM adds is measured from here
    no_lm, no_lm_errors = _no_lm_row(lists.dev_source, test_utterances, table)
    versus_no_lm = {name: paired_bootstrap(no_lm_errors, e, table.ref_words, 1000).to_dict() for name, e in errors.items()}
    gamma_rows = [{"gamma": g, "id_dev_ppl": kld_dev[g],
                   "ood_test_ppl": evaluation(a, paths["wt2_valid"], "wt2_valid")["normalized_ppl"]}
                  for g, a in sorted(kld_runs.items())]
    plot_gamma(gamma_rows, args.out / "gamma.png", "ATIS", "WikiText-2 valid")
    write_json(args.out / "results.json", {
        "settings": vars(args) | {"data_dir": str(args.data_dir), "out": str(args.out)},
        "fine_tune_lr_dev_ppl": {str(k): v for k, v in ft_dev.items()}, "fine_tune_lr": ft_lr,
        "kld_gamma": best_gamma, "gamma_sweep": gamma_rows, "models": rows,
        "kld_minus_fine_tune": kld_vs_ft.to_dict(), "no_lm": no_lm, "each_lm_minus_no_lm": versus_no_lm,
        "from_ood_id": paper_way,
    })
    print(f"no LM (word penalty {no_lm['word_penalty']:g}): test WER {no_lm['test_wer']:.2%}")
    for name, b in versus_no_lm.items():
        print(f"{name} - no LM: {b['delta']:+.2%} [{b['low']:+.2%}, {b['high']:+.2%}]")
    print(f"KLD - Fine-Tune: {kld_vs_ft.to_dict()}")


if __name__ == "__main__":
    main()

