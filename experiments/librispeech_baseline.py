"""Reproduce the baseline table of the LibriSpeech 30-best lists' README with our readers and WER.

    python experiments/librispeech_baseline.py --data-dir ../shared/data

Per split: the first-pass 1-best (the first hypothesis, sorted by the beam score
0.6*decoder + 0.4*ctc + 0.6*lm), the acoustic-only rerank (0.6*decoder + 0.4*ctc), and the
oracle WER of the 30-best lists.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rescorer.combination import Weights, build_arrays
from rescorer.formats.jsonl import read_jsonl
from rescorer.formats.score_mapping import LIBRISPEECH_ESPNET
from rescorer.wer.nbest_evaluation import error_table, evaluate_set

SPLITS = ("dev_clean", "dev_other", "test_clean", "test_other")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    root = args.data_dir / "librispeech-espnet2-hubert-30best" / "nbest"
    rows = {}
    print("| split | utterances | ref words | hyps | 1-best WER | AM-only rerank WER | oracle WER @30 |")
    print("|---|---|---|---|---|---|---|")
    for split in SPLITS:
        utterances = read_jsonl(root / f"{split}.jsonl.gz", LIBRISPEECH_ESPNET)
        hyps = sum(len(u.hyps) for u in utterances)
        arrays = build_arrays(utterances, np.zeros(hyps), np.zeros(hyps))
        # am + 0.6 lm is the beam score, so this weight setting also re-derives the 1-best
        evaluation = evaluate_set(utterances, arrays, error_table(utterances), Weights(1.0, 0.6, 0.0, 0.0))
        assert evaluation.rescored.errors == evaluation.first_pass.errors, "beam score does not reproduce the order"
        rows[split] = {"utterances": len(utterances), "ref_words": evaluation.first_pass.ref_words, "hyps": hyps,
                       "first_pass": evaluation.first_pass.to_dict(), "acoustic_only": evaluation.acoustic_only.to_dict(),
                       "oracle": evaluation.oracle.to_dict()}
        print(f"| {split} | {len(utterances):,} | {evaluation.first_pass.ref_words:,} | {hyps:,} |"
              f" {100 * evaluation.first_pass.wer:.2f} | {100 * evaluation.acoustic_only.wer:.2f} |"
              f" {100 * evaluation.oracle.wer:.2f} |", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
