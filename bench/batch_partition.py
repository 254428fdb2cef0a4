"""How the cut of length-sorted hypotheses into padded batches changes scoring speed.

    python bench/batch_partition.py --data-dir ../shared/data --out docs/bench/batch_partition.json

The LibriSpeech dev_other 30-best lists, scored by `score_sentences` in calls of k utterances
(k = 1: one request of the service; 11: about what the service batches at concurrency 32 under
its 8,192-token budget; all: an offline job), each with several step costs
(`rescorer.sentence_batches`: a batch of `count` sentences padded to `width` steps is charged
width * (count + step_cost)): 0 cuts at every length (no padding), large values fill the token
budget (one step cost of 1e9 stands for the plain fill-the-budget rule). The model is random
(speed does not depend on the weights) with the served LibriSpeech LM's shape: 2 x 256 LSTM,
the LibriSpeech words as vocabulary. Interleaved rounds, best of --rounds, hypotheses/s.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from rescorer.artifact import Artifact
from rescorer.formats.jsonl import read_jsonl
from rescorer.formats.score_mapping import LIBRISPEECH_ESPNET
from rescorer.model import LstmLanguageModel, ModelConfig
from rescorer.sentence_batches import STEP_COST
from rescorer.sentence_scoring import score_sentences
from rescorer.vocab import build_vocabulary

FILL_THE_BUDGET = 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--split", default="dev_other")
    parser.add_argument("--utterances", type=int, default=330)
    parser.add_argument("--per-call", type=int, nargs="+", default=[1, 4, 11, 32, 0], help="utterances per call; 0 = all")
    parser.add_argument("--step-costs", type=float, nargs="+", default=[0, 2, 4, 8, 16, 64, FILL_THE_BUDGET])
    parser.add_argument("--max-tokens", type=int, default=8192, help="the service's token budget")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    utterances = read_jsonl(args.data_dir / "librispeech-espnet2-hubert-30best" / "nbest" / f"{args.split}.jsonl.gz",
                            LIBRISPEECH_ESPNET)[: args.utterances]
    vocab = build_vocabulary(dict.fromkeys({w for u in utterances for h in u.hyps for w in h.words}, 1))
    torch.manual_seed(0)
    model = LstmLanguageModel(ModelConfig(len(vocab), args.hidden, args.hidden, args.layers, 0.0)).eval()
    artifact = Artifact(model, vocab)
    hypotheses = sum(len(u.hyps) for u in utterances)
    calls = {}
    for k in args.per_call:
        k = k or len(utterances)
        calls[k] = [[h.words for u in utterances[i : i + k] for h in u.hyps] for i in range(0, len(utterances), k)]
    score_sentences(artifact, calls[max(calls)][0][:300])  # warm-up

    best: dict[tuple[int, float], float] = {}
    for round_no in range(args.rounds):
        for k, groups in calls.items():
            for step_cost in args.step_costs:
                started = time.perf_counter()
                for sentences in groups:
                    score_sentences(artifact, sentences, args.max_tokens, per_token=True, step_cost=step_cost)
                elapsed = time.perf_counter() - started
                best[k, step_cost] = min(best.get((k, step_cost), float("inf")), elapsed)
        print(f"round {round_no + 1}/{args.rounds} done", flush=True)

    rows = []
    for k in calls:
        rates = {step_cost: hypotheses / best[k, step_cost] for step_cost in args.step_costs}
        fill = rates[FILL_THE_BUDGET]
        rows.append({"utterances_per_call": k, "hyps_per_s": {f"{c:g}": round(r, 1) for c, r in rates.items()},
                     "over_filling_the_budget": {f"{c:g}": round(r / fill, 3) for c, r in rates.items()}})
        print(f"{k:>4} utterances/call: " + ", ".join(f"step cost {c:g}: {r:,.0f}" for c, r in rates.items()), flush=True)
    result = {"command": "python bench/batch_partition.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in
                                                                      vars(args).items() if k in ("split", "max_tokens")),
              "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
              "torch": torch.__version__, "hypotheses": hypotheses, "vocab_size": len(vocab),
              "model": f"{args.layers} x {args.hidden} LSTM, random weights", "max_tokens": args.max_tokens,
              "library_step_cost_cpu": STEP_COST["cpu"], "rows": rows}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
