"""bf16 mixed-precision training against fp32 on real text: the same runs, the same epochs.

    python experiments/bf16_training.py --data-dir ../shared/data --out runs/bf16

On the first --train-sentences sentences of PTB train (valid: PTB valid), 1 x --hidden LSTMs
trained with `ce`, with `nce` and (`mos`) as the PTB distillation's teachers are (cross-entropy,
a mixture of 2 softmaxes, the AWD regularizations; --kinds picks) for --epochs epochs, once in fp32 and once with
`--precision bf16`, the same seed: final PTB valid perplexity (normalized) and training words/s
(the epochs' mean, from each run's history). The goal: valid perplexity within 1 % of fp32's.
Needs a CPU with bf16 arithmetic (or CUDA). Resumable run directories; OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.adaptation_runs import ptb_train_head, run, write_json
from experiments.ptb_distillation import TEACHER_REGULARIZATION
from training.config import TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("runs/bf16"))
    parser.add_argument("--train-sentences", type=int, default=10_000)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--kinds", nargs="+", choices=("ce", "nce", "mos"), default=["ce", "nce"])
    args = parser.parse_args()
    ptb = args.data_dir / "ptb"
    train_text = ptb_train_head(args.data_dir, args.out, args.train_sentences)
    rows = []
    for loss in args.kinds:
        teacher = dict(output_kind="mos", experts=2, **TEACHER_REGULARIZATION) if loss == "mos" else {}
        for precision in ("fp32", "bf16"):
            config = TrainConfig(train_path=str(train_text), dev_path=str(ptb / "ptb.valid.txt.gz"),
                                 out_dir=str(args.out / f"{loss}-{precision}"), loss="ce" if loss == "mos" else loss,
                                 precision=precision, embedding_dim=args.hidden, hidden_dim=args.hidden,
                                 num_layers=1, batch_size=32, max_epochs=args.epochs, anneal_epochs=0, **teacher)
            artifact = run(config)
            history = json.loads((artifact.parent / "history.json").read_text())
            rows.append({"loss": loss, "precision": precision, "epochs": len(history),
                         "valid_ppl": history[-1]["dev_normalized_ppl"],
                         "words_per_second": sum(r["train_words_per_second"] for r in history) / len(history)})
            print(f"{loss:4s} {precision}: valid ppl {rows[-1]['valid_ppl']:8.2f} after {len(history)} epochs,"
                  f" {rows[-1]['words_per_second']:8.0f} words/s", flush=True)
    for loss in args.kinds:
        fp32, bf16 = (r for r in rows if r["loss"] == loss)
        print(f"{loss}: bf16/fp32 words/s {bf16['words_per_second'] / fp32['words_per_second']:.2f}x,"
              f" valid ppl {100 * (bf16['valid_ppl'] / fp32['valid_ppl'] - 1):+.2f} %")
    write_json(args.out / "results.json", {"settings": vars(args) | {"data_dir": str(args.data_dir),
                                                                     "out": str(args.out)}, "rows": rows})


if __name__ == "__main__":
    main()
