"""The figures behind the divergence guard's factors (training/divergence.py): first epochs of
healthy and diverged runs on the demo corpus, with the guard switched off, as multiples of an
ignorant model's training loss (ln V; the noise model's NCE loss for nce, nce-tr and NCE+KLD
adaptation) and of V for the dev perplexity.

    python experiments/divergence_factors.py --out docs/results/divergence_factors.json

The corpus is the tests' demo corpus (1,500 training sentences, V = 131); 16-unit models,
batch 8, 32 noise samples, --clip-norm 1, two epochs at --lr 1, 30 and 100; and `make demo`'s
mixture-of-softmaxes teacher (its corpus, 96 units, batch 32, seed 2) at --lr 1. A few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import training.divergence as divergence
from training.cli import main as train_cli
from training.demo_corpus import write_demo_corpus, write_demo_domain

SMALL = ["--embedding-dim", "16", "--hidden-dim", "16", "--num-layers", "1", "--batch-size", "8",
         "--noise-samples", "32", "--clip-norm", "1", "--max-epochs", "2", "--no-progress"]


def unguarded(args: list[str], out: Path) -> list[dict]:
    """The run's history with every rule of the guard switched off."""
    shutil.rmtree(out, ignore_errors=True)
    saved = {name: getattr(divergence.DivergenceGuard, name) for name in ("check_step", "check_epoch", "check_final")}
    for name in saved:
        setattr(divergence.DivergenceGuard, name, lambda *a, **k: None)
    try:
        # a run the guard would have stopped can fail later (no best epoch to export); its history stays
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.suppress(Exception):
            train_cli([*args, "--out", str(out)])
    finally:
        for name, method in saved.items():
            setattr(divergence.DivergenceGuard, name, method)
    path = out / "history.json"
    return json.loads(path.read_text()) if path.exists() else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="divergence-factors-"))
    corpus = write_demo_corpus(work / "corpus", train=1500, dev=200, test=200)
    domain = write_demo_domain(work / "domain", train=200, dev=60, test=60)
    text = ["--train", str(corpus["train"]), "--dev", str(corpus["dev"])]
    unguarded(["train", *text, "--loss", "ce", *SMALL], work / "teacher")
    unguarded(["train", *text, "--loss", "nce", *SMALL], work / "general")
    runs = {}
    for lr in ("1", "30", "100"):
        rate = ["--lr", lr]
        runs[f"train ce lr {lr}"] = ("ce", ["train", *text, "--loss", "ce", *SMALL, *rate])
        runs[f"train nce lr {lr}"] = ("nce", ["train", *text, "--loss", "nce", *SMALL, *rate])
        runs[f"adapt lr {lr}"] = ("nce", ["adapt", "--init", str(work / "general" / "artifact"), "--train",
                                          str(domain["domain-train"]), "--dev", str(domain["domain-dev"]),
                                          "--gamma", "0.5", "--batch-size", "8", "--noise-samples", "32",
                                          "--clip-norm", "1", "--max-epochs", "2", "--no-progress", *rate])
        for loss in ("kl", "tr", "nce-tr"):
            runs[f"distill {loss} lr {lr}"] = (loss, ["distill", "--teacher", str(work / "teacher" / "artifact"),
                                                      "--loss", loss, "--teacher-top-k", "0",  # live, as measured
                                                      *text, *SMALL, *rate])
    demo = write_demo_corpus(work / "demo")  # `make demo`'s corpus (its default sizes; the same V)
    runs["demo mos teacher lr 1"] = ("ce", ["train", "--train", str(demo["train"]), "--dev", str(demo["dev"]),
                                            "--loss", "ce", "--output-kind", "mos", "--experts", "2",
                                            "--embedding-dim", "96", "--hidden-dim", "96", "--num-layers", "1",
                                            "--batch-size", "32", "--max-epochs", "2", "--seed", "2", "--no-progress"])
    rows = []
    vocab_size = len((work / "teacher" / "words.txt").read_text().splitlines())
    for name, (loss, command) in runs.items():
        history = unguarded(command, work / name.replace(" ", "-"))
        ignorant = divergence.ignorant_loss_per_token(loss, vocab_size, 32)
        row = {"run": name, "loss": loss, "ignorant_loss": ignorant,
               "epochs": [{"train_loss_per_token": r["train_loss_per_token"], "dev_ppl": r["dev_normalized_ppl"],
                           "loss_over_ignorant": r["train_loss_per_token"] / ignorant,
                           "dev_ppl_over_v": r["dev_normalized_ppl"] / vocab_size} for r in history]}
        rows.append(row)
        first = row["epochs"][0] if row["epochs"] else None
        print(name, "-" if first is None else f"loss {first['loss_over_ignorant']:.2f}x ignorant,"
              f" dev {first['dev_ppl_over_v']:.2f} V", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"vocab_size": vocab_size, "runs": rows}, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
