"""PTB: the same 2 x 256 LSTM trained with cross-entropy and with NCE, the same epochs.

    python experiments/ptb_ce_vs_nce.py --data-dir ../shared/data --out runs/ptb

Trains (or resumes, or reuses) one cross-entropy model and one NCE model per noise-sample
count (--noise-samples), re-centers each NCE model's log_z on the dev set, evaluates on the
test set, and writes `results.json` and `results.md` (the table quoted in docs/RESULTS.md)
under --out. Each training run resumes from its last checkpoint, so a stopped session loses
at most one epoch. Budget on an idle 2-core machine at the defaults (batch 16, 10 epochs):
NCE about 6 min (S = 256), 8 min (S = 1024), 14 min (S = 4096); cross-entropy 25-30 min.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rescorer.artifact import load_artifact
from training.checkpoint import load_checkpoint
from training.config import TrainConfig
from training.corpus import iter_sentences
from training.perplexity import evaluate, recenter_log_z
from training.schedule import Schedule
from training.train import train


def encode_file(path: Path, vocab) -> list[list[int]]:
    return [vocab.encode(words) for words in iter_sentences(path)]


def train_or_resume(config: TrainConfig) -> Path:
    """Reuse a finished run; continue a stopped one, or a finished one given more epochs."""
    run = Path(config.out_dir)
    artifact = run / "artifact"
    resume = (run / "checkpoint.pt").exists()
    if resume and (artifact / "config.json").exists():
        history = load_checkpoint(run / "checkpoint.pt")["history"]
        if Schedule.from_history(history, config, global_step=0).done(config):
            print(f"reusing {artifact}", flush=True)
            return artifact
    print(f"{'resuming' if resume else 'training'} {run}", flush=True)
    return train(config, resume=resume, progress=sys.stderr.isatty()).artifact_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("runs/ptb"))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16, help="16 gave NCE the most progress per epoch")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1.0)
    parser.add_argument("--noise-samples", type=int, nargs="+", default=[256, 1024, 4096],
                        help="one NCE model per count S (paper 1: 256); the cross-entropy model once")
    args = parser.parse_args()
    ptb = args.data_dir / "ptb"
    test_path = ptb / "ptb.test.txt.gz"

    rows = {}
    runs = [(f"nce-s{s}", "nce", s) for s in args.noise_samples] + [("ce", "ce", 256)]
    for name, loss, noise_samples in runs:
        config = TrainConfig(
            train_path=str(ptb / "ptb.train.txt.gz"), dev_path=str(ptb / "ptb.valid.txt.gz"),
            out_dir=str(args.out / name), loss=loss, embedding_dim=args.hidden, hidden_dim=args.hidden,
            num_layers=2, lr=args.lr, batch_size=args.batch_size, max_epochs=args.epochs, anneal_epochs=args.epochs,  # same epochs for all
            noise_samples=noise_samples,
        )
        artifact_path = train_or_resume(config)
        history = json.loads((Path(config.out_dir) / "history.json").read_text())
        artifact = load_artifact(artifact_path)
        test = encode_file(test_path, artifact.vocab)
        row = {"loss": loss, "noise_samples": noise_samples if loss == "nce" else None,
               "epochs": len(history), "lr": args.lr,
               "train_seconds": sum(h["train_seconds"] for h in history),
               "words_per_second": sum(h["train_words_per_second"] for h in history) / len(history),
               "test": evaluate(artifact.model, test, artifact.vocab.bos_id, artifact.vocab.eos_id).to_dict()}
        if loss == "nce":  # re-center on dev (never on test), then measure test again
            recentered = Path(config.out_dir) / "artifact-recentered"
            shutil.rmtree(recentered, ignore_errors=True)
            shutil.copytree(artifact_path, recentered)
            dev = encode_file(Path(config.dev_path), artifact.vocab)
            dev_stats = evaluate(artifact.model, dev, artifact.vocab.bos_id, artifact.vocab.eos_id)
            recenter_log_z(recentered, dev_stats, config.dev_path)
            model = load_artifact(recentered).model
            row["dev_log_z_shift"] = dev_stats.log_z_mean
            row["test_recentered"] = evaluate(model, test, artifact.vocab.bos_id, artifact.vocab.eos_id).to_dict()
        rows[name] = row

    result = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {torch.get_num_threads()} threads,"
              f" torch {torch.__version__}", "settings": {k: str(v) for k, v in vars(args).items()}, "rows": rows}
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "results.md").write_text(markdown_table(rows))
    print(markdown_table(rows))


def markdown_table(rows: dict) -> str:
    lines = ["| model | epochs | test normalized ppl | test self-normalized ppl | mean log Z(h) | var log Z(h) |"
             " mean abs log Z(h) | words/s | train wall time |", "|---|---|---|---|---|---|---|---|---|"]

    def line(name, row, test):
        return (f"| {name} | {row['epochs']} | {test['normalized_ppl']:.1f} | {test['self_normalized_ppl']:.1f} |"
                f" {test['log_z_mean']:+.3f} | {test['log_z_var']:.3f} | {test['log_z_abs_mean']:.3f} |"
                f" {row['words_per_second']:.0f} | {row['train_seconds'] / 60:.1f} min |")

    ce = rows["ce"]
    lines.append(line("CE (softmax)", ce, ce["test"]))
    gaps = []
    for row in rows.values():
        if row["loss"] != "nce":
            continue
        s = row["noise_samples"]
        lines.append(line(f"NCE, S = {s}", row, row["test"]))
        lines.append(line(f"NCE, S = {s}, log_z re-centered on dev", row, row["test_recentered"]))
        gap = row["test"]["normalized_ppl"] / ce["test"]["normalized_ppl"] - 1
        gaps.append(f"NCE (S = {s}) vs CE normalized test perplexity: {gap:+.1%}")
    return "\n".join(lines) + "\n\n" + "\n".join(gaps) + "\n"


if __name__ == "__main__":
    main()
