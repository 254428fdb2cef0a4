"""Medical domain adaptation with NCE+KLD, as paper 1 Tables 3 and 5 (mtsamples, Gastroenterology).

    python experiments/medical_adaptation.py --data-dir ../shared/data --out runs/medical

1. Notes: mtsamples rows deduplicated by transcription text (most notes are filed under several
   specialties). In-domain (ID): every distinct note filed under Gastroenterology at least once;
   out-of-domain (OOD): every other distinct note. Each set is split by note with a fixed seed
   (ID 80/10/10 train/dev/test; OOD 90/5/5).
2. Text: one sentence per line, lower case; a sentence ends at `.`, `?`, `!`, `;` or `:` followed
   by a space; words are runs of letters and digits (an apostrophe inside a word is kept).
3. One vocabulary for every model, from OOD train + ID train, words seen at least twice.
4. Models, all NCE with the same architecture (1 x 256 LSTM, embedding 256: sized for 2 CPU
   cores), selected and scheduled on ID dev: OOD; ID; OOD+ID (ID appended at the end of OOD);
   Fine-Tune (init OOD+ID, trained on ID, learning rate chosen on ID dev from --ft-lrs);
   KLD (init and reference OOD+ID, trained on ID at Fine-Tune's learning rate, gamma in
   --gammas, chosen on ID dev; gamma = 1 is Fine-Tune itself, not trained twice).
5. Every model on ID dev, ID test and OOD test: normalized and self-normalized perplexity and the
   log Z(h) statistics; adaptation wall time against OOD+ID's; a plot of ID dev and OOD test
   perplexity against gamma. Everything goes to OUT/results.json and OUT/gamma.png.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import random
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.adaptation_runs import evaluation, plot_gamma, run, train_seconds, write_json
from rescorer.atomic import write_text_atomic
from rescorer.vocab import build_vocabulary
from training.config import TrainConfig
from training.corpus import count_words

IN_DOMAIN = "Gastroenterology"
_SENTENCE_END = re.compile(r"[.?!;:]\s+")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def note_sentences(note: str) -> list[str]:
    sentences = []
    for chunk in _SENTENCE_END.split(note.lower().replace(".,", ". ").replace(":,", ": ")):
        words = _WORD.findall(chunk)
        if words:
            sentences.append(" ".join(words))
    return sentences


def split_notes(data_dir: Path, seed: int) -> dict[str, list[str]]:
    with gzip.open(data_dir / "mtsamples" / "mtsamples.csv.gz", "rt", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    specialties: dict[str, set[str]] = {}
    for row in rows:
        text = row["transcription"].strip()
        if text:
            specialties.setdefault(text, set()).add(row["medical_specialty"].strip())
    notes = sorted(specialties)  # distinct transcriptions, in a fixed order
    in_domain = [n for n in notes if IN_DOMAIN in specialties[n]]
    out_of_domain = [n for n in notes if IN_DOMAIN not in specialties[n]]
    rng = random.Random(seed)
    rng.shuffle(in_domain)
    rng.shuffle(out_of_domain)

    def cut(items: list[str], dev: float, test: float) -> tuple[list[str], list[str], list[str]]:
        n_dev, n_test = round(len(items) * dev), round(len(items) * test)
        return items[n_dev + n_test:], items[:n_dev], items[n_dev:n_dev + n_test]

    id_train, id_dev, id_test = cut(in_domain, 0.1, 0.1)
    ood_train, ood_dev, ood_test = cut(out_of_domain, 0.05, 0.05)
    return {"id_train": id_train, "id_dev": id_dev, "id_test": id_test,
            "ood_train": ood_train, "ood_dev": ood_dev, "ood_test": ood_test}


def prepare(data_dir: Path, out: Path, seed: int) -> tuple[dict[str, Path], dict[str, dict[str, int]]]:
    text_dir = out / "text"
    paths = {name: text_dir / f"{name}.txt" for name in
             ("id_train", "id_dev", "id_test", "ood_train", "ood_dev", "ood_test", "ood_id_train")}
    paths["vocab"] = text_dir / "words.txt"
    splits = split_notes(data_dir, seed)
    stats = {}
    if not paths["vocab"].exists():
        for name, notes in splits.items():
            lines = [s for note in notes for s in note_sentences(note)]
            write_text_atomic(paths[name], "\n".join(lines) + "\n")
        ood_id = paths["ood_train"].read_text() + paths["id_train"].read_text()  # ID appended at the end
        write_text_atomic(paths["ood_id_train"], ood_id)
        counts = count_words([paths["ood_train"], paths["id_train"]])
        write_text_atomic(paths["vocab"], build_vocabulary(counts, None, min_count=2).to_text())
    for name, notes in splits.items():
        text = paths[name].read_text().split("\n")
        stats[name] = {"notes": len(notes), "sentences": sum(1 for line in text if line),
                       "words": sum(len(line.split()) for line in text)}
    return paths, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("runs/medical"))
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=15, help="epoch budget of the from-scratch models")
    parser.add_argument("--adapt-epochs", type=int, default=15, help="epoch budget of Fine-Tune and KLD")
    parser.add_argument("--ft-lrs", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.4])
    parser.add_argument("--gammas", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 0.9])
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    paths, stats = prepare(args.data_dir, args.out, args.seed)
    print({k: v["words"] for k, v in stats.items()}, flush=True)

    common = dict(vocab_path=None, embedding_dim=args.hidden, hidden_dim=args.hidden, num_layers=args.layers,
                  batch_size=args.batch_size, loss="nce", seed=args.seed)
    dev = str(paths["id_dev"])

    def scratch(name: str, train_text: str) -> Path:
        return run(TrainConfig(train_path=train_text, dev_path=dev, out_dir=str(args.out / name),
                               max_epochs=args.epochs, **{**common, "vocab_path": str(paths["vocab"])}))

    def adapt(name: str, init: Path, lr: float, gamma: float) -> Path:
        return run(TrainConfig(train_path=str(paths["id_train"]), dev_path=dev, out_dir=str(args.out / name),
                               init_path=str(init), reference_path=str(init) if gamma < 1 else None,
                               gamma=gamma, lr=lr, max_epochs=args.adapt_epochs, **common))

    models = {"OOD": scratch("ood", str(paths["ood_train"])), "ID": scratch("id", str(paths["id_train"])),
              "OOD+ID": scratch("ood_id", str(paths["ood_id_train"]))}
    ft_runs = {lr: adapt(f"ft_lr{lr:g}", models["OOD+ID"], lr, 1.0) for lr in args.ft_lrs}
    ft_dev = {lr: evaluation(a, paths["id_dev"], "id_dev")["normalized_ppl"] for lr, a in ft_runs.items()}
    ft_lr = min(ft_dev, key=ft_dev.get)
    models["Fine-Tune"] = ft_runs[ft_lr]
    kld_runs = {g: adapt(f"kld_g{g:g}", models["OOD+ID"], ft_lr, g) for g in args.gammas}
    kld_runs[1.0] = models["Fine-Tune"]
    kld_dev = {g: evaluation(a, paths["id_dev"], "id_dev")["normalized_ppl"] for g, a in kld_runs.items()}
    best_gamma = min(kld_dev, key=kld_dev.get)
    models["KLD"] = kld_runs[best_gamma]

    def describe(artifact: Path) -> dict:
        return {"artifact": str(artifact), "train_seconds": train_seconds(artifact),
                **{s: evaluation(artifact, paths[s], s) for s in ("id_dev", "id_test", "ood_test")}}

    rows = {name: describe(a) for name, a in models.items()}
    baseline = rows["OOD+ID"]["id_test"]["normalized_ppl"]
    for row in rows.values():
        row["relative_ppl_change_vs_ood_id"] = (baseline - row["id_test"]["normalized_ppl"]) / baseline
    gamma_rows = [{"gamma": g, "artifact": str(a), "train_seconds": train_seconds(a),
                   "id_dev_ppl": kld_dev[g], "id_test_ppl": evaluation(a, paths["id_test"], "id_test")["normalized_ppl"],
                   "ood_test_ppl": evaluation(a, paths["ood_test"], "ood_test")["normalized_ppl"]}
                  for g, a in sorted(kld_runs.items())]
    plot_gamma(gamma_rows, args.out / "gamma.png", "Gastroenterology", "out-of-domain")
    document = {"settings": vars(args) | {"data_dir": str(args.data_dir), "out": str(args.out)},
                "data": stats, "fine_tune_lr_dev_ppl": {str(k): v for k, v in ft_dev.items()}, "fine_tune_lr": ft_lr,
                "kld_gamma": best_gamma, "models": rows, "gamma_sweep": gamma_rows}
    write_json(args.out / "results.json", document)
    print(f"{'model':10s} {'ID test ppl':>11s} {'rel. vs OOD+ID':>14s} {'self-norm':>9s} {'mean|logZ|':>10s}"
          f" {'OOD test':>9s} {'train s':>8s}")
    for name, row in rows.items():
        t = row["id_test"]
        print(f"{name:10s} {t['normalized_ppl']:11.2f} {row['relative_ppl_change_vs_ood_id']:+14.1%}"
              f" {t['self_normalized_ppl']:9.2f} {t['log_z_abs_mean']:10.3f} {row['ood_test']['normalized_ppl']:9.2f}"
              f" {row['train_seconds']:8.0f}")
    for r in gamma_rows:
        print(f"gamma {r['gamma']:4g}: ID dev {r['id_dev_ppl']:.2f} ID test {r['id_test_ppl']:.2f}"
              f" OOD test {r['ood_test_ppl']:.2f}")


if __name__ == "__main__":
    main()
