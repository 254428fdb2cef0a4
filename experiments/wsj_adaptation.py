"""Adaptation from Wikipedia to spoken newswire, rescoring real lists of an n-gram first pass.

    python experiments/wsj_adaptation.py --data-dir ../shared/data --out runs/wsj-adapt

Paper 1, Table 3's rows on WSJ:
- OOD: WikiText-2 train brought to the lists' conventions (training/text_normalization.py, then
  lower case; sentences holding digits are dropped, since the lists write numbers as words);
- ID: the spoken-form WSJ text beside the lists (`treebank-sentences-spoken-validate` to train;
  `-test` split into dev, its first half, and test, its second), lower-cased, with `'s`, `n't`
  and the other apostrophe tokens joined to the word before, as the lists write them;
- OOD+ID: WikiText-2, then the ID text, seen last in every batch column (`--train A --train B`);
- Fine-Tune: init OOD+ID, trained on ID (gamma 1), the learning rate chosen on ID dev;
- KLD: init and reference OOD+ID, Fine-Tune's rate, gamma chosen on ID dev from --gammas.
All NCE, 1 x --hidden LSTMs, one vocabulary (every word of both training texts). Per model: ID
test perplexity (normalized, and self-normalized as the rescorer scores), and the WER of the 213
HUB-1 lists (`wsj-hub1-nbest`) rescored with the model interpolated with the first-pass LM:
weights by two-fold cross-validation (tune on the even utterances, test on the odd, and back;
pooled), with a paired-bootstrap interval against the first-pass-LM-only row and KLD against
Fine-Tune. Resumable run directories; OUT/results.json.
"""

from __future__ import annotations

import argparse
import gzip
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.adaptation_runs import evaluation, run, train_seconds, write_json
from rescorer.artifact import load_artifact
from rescorer.atomic import write_text_atomic
from rescorer.combination import best_hypotheses, build_arrays, total_scores
from rescorer.formats.reader import NbestSource, read_nbest
from rescorer.rerank import score_nbest
from rescorer.tuning import SearchSpace, tune_weights
from rescorer.vocab import build_vocabulary
from rescorer.wer.bootstrap import paired_bootstrap
from rescorer.wer.nbest_evaluation import error_table
from training.config import TrainConfig
from training.corpus import count_words
from training.text_normalization import wikitext_to_librispeech

CLITIC = re.compile(r" ('[a-z]+|n't)(?= |$)")


def spoken_to_lists(line: str) -> str:
    """The spoken-form WSJ text in the lists' convention: lower case, clitics joined."""
    return CLITIC.sub(r"\1", " ".join(line.split()).lower())


def prepare(data_dir: Path, out: Path, wikitext_sentences: int | None) -> dict[str, Path]:
    text = out / "text"
    paths = {n: text / f"{n}.txt" for n in ("ood_train", "ood_valid", "id_train", "id_dev", "id_test")}
    paths["vocab"] = text / "words.txt"
    if paths["vocab"].exists():
        return paths
    for split in ("train", "valid"):
        with gzip.open(data_dir / "wikitext-2" / f"{split}.txt.gz", "rt", encoding="utf-8") as f:
            lines = [s.lower() for s in wikitext_to_librispeech(f) if not any(c.isdigit() for c in s)]
        write_text_atomic(paths[f"ood_{split}"], "\n".join(lines[:wikitext_sentences]) + "\n")
    wsj = data_dir / "wsj-hub1-nbest"
    with gzip.open(wsj / "treebank-sentences-spoken-validate.txt.gz", "rt", encoding="utf-8") as f:
        write_text_atomic(paths["id_train"], "".join(spoken_to_lists(line) + "\n" for line in f if line.strip()))
    with gzip.open(wsj / "treebank-sentences-spoken-test.txt.gz", "rt", encoding="utf-8") as f:
        held = [spoken_to_lists(line) for line in f if line.strip()]
    write_text_atomic(paths["id_dev"], "\n".join(held[: len(held) // 2]) + "\n")
    write_text_atomic(paths["id_test"], "\n".join(held[len(held) // 2:]) + "\n")
    counts = count_words([paths["ood_train"], paths["id_train"]])
    write_text_atomic(paths["vocab"], build_vocabulary(counts, None, min_count=1).to_text())
    return paths


def cross_validated(arrays, table, space: SearchSpace | None = None) -> tuple[np.ndarray, list[dict]]:
    """Per-utterance test errors of two-fold cross-validation (tune on the even utterances, test
    on the odd, and back), and the weights each fold chose."""
    utterances = np.arange(len(arrays.utt_ids))
    errors = np.zeros(len(utterances), dtype=np.int64)
    chosen_weights = []
    for dev, test in ((utterances[0::2], utterances[1::2]), (utterances[1::2], utterances[0::2])):
        dev_arrays, dev_index = arrays.subset(dev)
        test_arrays, test_index = arrays.subset(test)
        weights = tune_weights(dev_arrays, table.hyp_errors[dev_index], table.ref_words[dev], space).weights
        chosen_weights.append(weights.to_dict())
        chosen = best_hypotheses(test_arrays, total_scores(test_arrays, weights))
        errors[test] = table.hyp_errors[test_index][chosen]
    return errors, chosen_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("runs/wsj-adapt"))
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=10, help="epoch cap of OOD and OOD+ID")
    parser.add_argument("--id-epochs", type=int, default=25, help="epoch cap of ID, Fine-Tune and KLD")
    parser.add_argument("--ft-lrs", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.4])
    parser.add_argument("--gammas", type=float, nargs="+", default=[0.25, 0.5, 0.75, 0.9])
    parser.add_argument("--wikitext-sentences", type=int, help="use only the first N WikiText sentences (smoke runs)")
    args = parser.parse_args()
    paths = prepare(args.data_dir, args.out, args.wikitext_sentences)
    common = dict(embedding_dim=args.hidden, hidden_dim=args.hidden, num_layers=1, batch_size=32, loss="nce")
    id_dev = str(paths["id_dev"])

    def scratch(name: str, corpora: list[Path], dev: str, epochs: int) -> Path:
        return run(TrainConfig(train_path=str(corpora[0]), later_train_paths=tuple(str(c) for c in corpora[1:]),
                               dev_path=dev, out_dir=str(args.out / name), vocab_path=str(paths["vocab"]),
                               max_epochs=epochs, **common))

    def adapt(name: str, init: Path, lr: float, gamma: float) -> Path:
        return run(TrainConfig(train_path=str(paths["id_train"]), dev_path=id_dev, out_dir=str(args.out / name),
                               init_path=str(init), reference_path=str(init) if gamma < 1 else None, gamma=gamma,
                               lr=lr, max_epochs=args.id_epochs, **common))

    models = {"OOD": scratch("ood", [paths["ood_train"]], str(paths["ood_valid"]), args.epochs),
              "ID": scratch("id", [paths["id_train"]], id_dev, args.id_epochs),
              "OOD+ID": scratch("ood_id", [paths["ood_train"], paths["id_train"]], id_dev, args.epochs)}
    ft = {lr: adapt(f"ft_lr{lr:g}", models["OOD+ID"], lr, 1.0) for lr in args.ft_lrs}
    ft_dev = {lr: evaluation(a, paths["id_dev"], "id_dev")["normalized_ppl"] for lr, a in ft.items()}
    lr = min(ft_dev, key=ft_dev.get)
    kld = {g: adapt(f"kld_g{g:g}", models["OOD+ID"], lr, g) for g in args.gammas}
    kld_dev = {g: evaluation(a, paths["id_dev"], "id_dev")["normalized_ppl"] for g, a in kld.items()}
    gamma = min(kld_dev, key=kld_dev.get)
    models["Fine-Tune"], models["KLD"] = ft[lr], kld[gamma]

    utterances = read_nbest(NbestSource(str(args.data_dir / "wsj-hub1-nbest" / "nbest.jsonl.gz")))
    table = error_table(utterances)
    n = sum(len(u.hyps) for u in utterances)
    first_pass_only, _ = cross_validated(build_arrays(utterances, np.zeros(n), np.zeros(n)), table,
                                         SearchSpace(fixed={"interp_weight": 0.0}))
    words = int(table.ref_words.sum())
    rows, errors = {}, {}
    for name, artifact in models.items():
        errors[name], _ = cross_validated(score_nbest(load_artifact(artifact), utterances), table)
        rows[name] = {"artifact": str(artifact), "id_test": evaluation(artifact, paths["id_test"], "id_test"),
                      "train_seconds": train_seconds(artifact), "wer": int(errors[name].sum()) / words,
                      "vs_first_pass_lm": paired_bootstrap(first_pass_only, errors[name], table.ref_words).to_dict()}
        print(f"{name:10s} ID test ppl {rows[name]['id_test']['normalized_ppl']:8.2f}  HUB-1 WER"
              f" {100 * rows[name]['wer']:.2f} %", flush=True)
    write_json(args.out / "results.json", {
        "settings": vars(args) | {"data_dir": str(args.data_dir), "out": str(args.out)},
        "first_pass_lm_only_wer": int(first_pass_only.sum()) / words, "fine_tune_lr": lr,
        "fine_tune_dev_ppl": {str(k): v for k, v in ft_dev.items()}, "kld_gamma": gamma,
        "kld_dev_ppl": {str(k): v for k, v in kld_dev.items()}, "models": rows,
        "kld_minus_fine_tune": paired_bootstrap(errors["Fine-Tune"], errors["KLD"], table.ref_words).to_dict(),
        "kld_minus_ood_id": paired_bootstrap(errors["OOD+ID"], errors["KLD"], table.ref_words).to_dict(),
        "fine_tune_minus_ood_id": paired_bootstrap(errors["OOD+ID"], errors["Fine-Tune"], table.ref_words).to_dict()})
    print(f"first-pass LM only: {100 * first_pass_only.sum() / words:.2f} %")


if __name__ == "__main__":
    main()
