"""Scoring throughput on the real LibriSpeech 30-best lists: the library vs a bare PyTorch loop.

    python bench/score_throughput.py --data-dir ../shared/data --out docs/bench/score_throughput.json

One run, side by side, random weights (speed does not depend on them), V = 58k (the
LibriSpeech words plus filler words), 1-layer LSTM with embedding = hidden, for H = 200 and 1024:
- library (`rescorer.sentence_scoring.score_sentences`): self-normalized and softmax output, batched
  across utterances (token budget), one utterance per call, one hypothesis per call;
- bare: the shortest PyTorch loop (pad, LSTM, gather or log-softmax) batched and one
  hypothesis per call.
Reported: hypotheses/s of each, and the two ratios (self-normalized vs
softmax, batched vs one hypothesis per call) for library and bare, and the share kept.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from rescorer.artifact import Artifact
from rescorer.formats.jsonl import read_jsonl
from rescorer.formats.score_mapping import LIBRISPEECH_ESPNET
from rescorer.model import LstmLanguageModel, ModelConfig
from rescorer.sentence_scoring import score_sentences
from rescorer.vocab import build_vocabulary


def make_artifact(words: list[str], vocab_size: int, hidden: int, kind: str) -> Artifact:
    counts = dict.fromkeys(words, 2)
    for i in range(vocab_size):
        if len(counts) >= vocab_size - 3:
            break
        counts.setdefault(f"FILLER{i}", 1)
    vocab = build_vocabulary(counts)
    torch.manual_seed(0)
    model = LstmLanguageModel(ModelConfig(len(vocab), hidden, hidden, 1, 0.0, output_kind=kind)).eval()
    return Artifact(model, vocab)


def timed(fn, min_seconds: float = 1.0, max_runs: int = 20) -> float:
    """Best seconds per call over repeated runs (at least one, until min_seconds have passed)."""
    fn()  # warm-up
    best, spent, runs = float("inf"), 0.0, 0
    while runs < 1 or (spent < min_seconds and runs < max_runs):
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        best, spent, runs = min(best, elapsed), spent + elapsed, runs + 1
    return best


@torch.inference_mode()
def bare_score(model: LstmLanguageModel, batch_ids: list[list[int]], bos: int, eos: int, softmax: bool) -> torch.Tensor:
    """Pad, run the LSTM, gather the target rows (or a full log-softmax): the minimal loop."""
    width = max(len(s) for s in batch_ids) + 1
    inputs = torch.full((len(batch_ids), width), bos)
    targets = torch.full((len(batch_ids), width), -1)
    for row, s in enumerate(batch_ids):
        inputs[row, 1 : len(s) + 1] = torch.tensor(s)
        targets[row, : len(s)] = torch.tensor(s)
        targets[row, len(s)] = eos
    h, _ = model.lstm(model.embedding(inputs))
    mask = targets >= 0
    h, y = h[mask], targets[mask]
    if softmax:
        lp = torch.log_softmax(F.linear(h, model.output_rows, model.output_bias.weight[:, 0]), -1).gather(1, y[:, None])[:, 0]
    else:
        lp = (h * model.output_rows[y]).sum(-1) + model.output_bias.weight[y, 0] - model.log_z
    scores = torch.zeros(mask.shape)
    scores[mask] = lp
    return scores.sum(1)


def measure(hidden: int, words: list[str], chosen, singles, args) -> dict:
    sn = make_artifact(words, args.vocab_size, hidden, "self_normalized")
    sm = make_artifact(words, args.vocab_size, hidden, "softmax")
    sm.model.load_state_dict(sn.model.state_dict())
    sentences = [h.words for u in chosen for h in u.hyps]
    ids = [sn.vocab.encode(s) for s in sentences]
    bos, eos = sn.vocab.bos_id, sn.vocab.eos_id
    n, n1 = len(sentences), len(singles)
    per_utt = [[h.words for h in u.hyps] for u in chosen]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    step = max(1, args.max_tokens // 25)  # about the library's token budget at ~25 tokens a hypothesis

    def bare_batched(model, softmax):
        return lambda: [bare_score(model, [ids[i] for i in order[k : k + step]], bos, eos, softmax)
                        for k in range(0, len(order), step)]

    seconds = {
        "library_sn_batched": timed(lambda: score_sentences(sn, sentences, args.max_tokens)) / n,
        "library_sm_batched": timed(lambda: score_sentences(sm, sentences, args.max_tokens), max_runs=2) / n,
        "library_sn_per_utterance": timed(lambda: [score_sentences(sn, u, args.max_tokens) for u in per_utt]) / n,
        "library_sn_per_hypothesis": timed(lambda: [score_sentences(sn, [s]) for s in singles], max_runs=3) / n1,
        "bare_sn_batched": timed(bare_batched(sn.model, False)) / n,
        "bare_sm_batched": timed(bare_batched(sm.model, True), max_runs=2) / n,
        "bare_sn_per_hypothesis": timed(lambda: [bare_score(sn.model, [i], bos, eos, False) for i in ids[:n1]], max_runs=3) / n1,
    }
    rate = {k: 1.0 / v for k, v in seconds.items()}
    row = {"hidden": hidden, "vocab_size": len(sn.vocab), "hypotheses": n,
           "hyps_per_second": {k: round(v, 1) for k, v in rate.items()}}
    row["library_sn_over_sm"] = rate["library_sn_batched"] / rate["library_sm_batched"]
    row["bare_sn_over_sm"] = rate["bare_sn_batched"] / rate["bare_sm_batched"]
    row["library_batched_over_single"] = rate["library_sn_batched"] / rate["library_sn_per_hypothesis"]
    row["bare_batched_over_single"] = rate["bare_sn_batched"] / rate["bare_sn_per_hypothesis"]
    row["kept_sn_over_sm"] = row["library_sn_over_sm"] / row["bare_sn_over_sm"]
    row["kept_batching"] = row["library_batched_over_single"] / row["bare_batched_over_single"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--split", default="dev_clean")
    parser.add_argument("--vocab-size", type=int, default=58_000)
    parser.add_argument("--hidden-sizes", type=int, nargs="+", default=[200, 1024])
    parser.add_argument("--utterances", type=int, default=60, help="utterances in the batched runs")
    parser.add_argument("--single-hyps", type=int, default=150, help="hypotheses in one-per-call runs")
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    utterances = read_jsonl(args.data_dir / "librispeech-espnet2-hubert-30best" / "nbest" / f"{args.split}.jsonl.gz",
                            LIBRISPEECH_ESPNET)
    words = sorted({w for u in utterances for h in u.hyps for w in h.words})
    chosen = utterances[: args.utterances]
    singles = [h.words for u in chosen for h in u.hyps][: args.single_hyps]
    rows = []
    for hidden in args.hidden_sizes:
        row = measure(hidden, words, chosen, singles, args)
        rows.append(row)
        print(json.dumps(row, indent=1), flush=True)
    result = {"machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()},
              "settings": {k: str(v) for k, v in vars(args).items()}, "rows": rows}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
