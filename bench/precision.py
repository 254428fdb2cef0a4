"""Reduced precision, parity and speed: fp32, bf16 and (for comparison) int8 side by side in one run.

    python bench/precision.py --data-dir ../shared/data --work runs/precision --out docs/bench/precision.json

Models, trained on real text if WORK does not hold them yet (resumable; --train-only trains and
stops, so that the measurement can wait for an idle machine): NCE LSTMs on WikiText-2
normalized to the LibriSpeech lists' conventions (experiments/librispeech_wikitext.py), a
2 x 256 (embedding 256; --epochs-small epochs, or --small-model, e.g. that experiment's model)
and a 1 x 1024 (embedding 256; --epochs-large, "trained briefly": the point is the arithmetic,
not the perplexity).

Lists, each split into a tuning part and an evaluation part:
- LibriSpeech 30-best: tuned on dev_other, evaluated on test_other (--utterances of each);
- HyPoradise WSJ and ATIS 5-best (upper-cased for the model, WER on upper-cased text): tuned
  on the even-numbered utterances, evaluated on the odd ones.
Weights are tuned once per model and list with the fp32 scores (`rescorer.tuning`, at any
score scale: the HyPoradise lists' acoustic score is a per-token mean), then every precision is
evaluated at those weights; and, because tuned weights may give our LM little or no say, also
with our LM alone choosing the 1-best (the strictest parity check). Per model, list and precision: hypotheses/s over the evaluation
part (best of --repeats, the precisions taking turns in each round, this process's torch threads), the change of each sentence's
log-probability against fp32 (mean absolute, median, 99th percentile, max), the share of
utterances whose rescored 1-best differs from fp32's, and the WER. Per model: the weights'
resident bytes per precision. Once: the CPU's bf16/fp32 ratio for a 450 x 1024 by 1024 x 4096
matrix multiply, the yardstick of the speed goal.

int8 is dynamic quantization of the LSTM and linear layers through torch.ao.quantization
(deprecated in torch 2.13; measured here for comparison only, not offered as an option).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.adaptation_runs import run
from experiments.librispeech_wikitext import MAPPING, prepare
from rescorer.artifact import Artifact, load_artifact
from rescorer.combination import Weights, best_hypotheses, build_arrays, total_scores
from rescorer.formats.reader import NbestSource, read_nbest
from rescorer.nbest import Hypothesis, Utterance
from rescorer.precision import weight_bytes
from rescorer.sentence_scoring import score_sentences
from rescorer.tuning import tune_weights
from rescorer.wer.nbest_evaluation import error_table
from training.config import TrainConfig

LM_ONLY = Weights(am_weight=0.0, lm_weight=1.0, interp_weight=1.0, word_penalty=0.0)


def cpu_description() -> dict:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except OSError:
        lscpu = ""
    fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    return {"model": fields.get("Model name", platform.processor()).strip(), "threads": torch.get_num_threads(),
            "avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags, "torch": torch.__version__}


def interleaved_best_seconds(fns: dict, repeats: int) -> dict:
    """Best of `repeats` for each function, the functions taking turns within every round, so
    that a drift of this machine's speed during the run falls on all of them alike."""
    for fn in fns.values():
        fn()  # warm-up (allocators, oneDNN primitives)
    times: dict = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}


def matmul_ratio(repeats: int = 20) -> dict:
    a, b = torch.randn(450, 1024), torch.randn(1024, 4096)
    a16, b16 = a.bfloat16(), b.bfloat16()
    best = interleaved_best_seconds({"fp32": lambda: a @ b, "bf16": lambda: a16 @ b16}, repeats)
    fp32, bf16 = best["fp32"], best["bf16"]
    return {"shape": "450x1024 @ 1024x4096", "fp32_seconds": fp32, "bf16_seconds": bf16, "bf16_speedup": fp32 / bf16}


def int8_dynamic(artifact: Artifact) -> Artifact:
    quantized = copy.deepcopy(artifact)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized.model = torch.ao.quantization.quantize_dynamic(
            quantized.model, {torch.nn.LSTM, torch.nn.Linear}, dtype=torch.qint8)
    return quantized


def upper(utterances: list[Utterance]) -> list[Utterance]:
    return [Utterance(u.utt_id, [Hypothesis(h.text.upper(), h.am_score, h.lm_score) for h in u.hyps],
                      None if u.ref is None else u.ref.upper()) for u in utterances]


def lists(data_dir: Path, utterances: int) -> dict[str, tuple[list[Utterance], list[Utterance], object]]:
    """name -> (tuning part, evaluation part)."""
    ls = data_dir / "librispeech-espnet2-hubert-30best" / "nbest"
    out = {"librispeech_other": (
        read_nbest(NbestSource(str(ls / "dev_other.jsonl.gz"), score_mapping=MAPPING))[:utterances],
        read_nbest(NbestSource(str(ls / "test_other.jsonl.gz"), score_mapping=MAPPING))[:utterances])}
    for name in ("wsj_score", "atis"):
        every = read_nbest(NbestSource(str(data_dir / "hyporadise-v0" / "test" / f"test_{name}.json.gz")))
        every = upper([u for u in every if u.extra.get("scored")][: 2 * utterances])  # lists with scores
        out[name.replace("_score", "")] = (every[0::2], every[1::2])
    return out


def sentences_of(utterances: list[Utterance]) -> list[list[str]]:
    return [h.words for u in utterances for h in u.hyps]


def measure(models: dict[str, Path], data_dir: Path, utterances: int, repeats: int) -> list[dict]:
    rows = []
    every_list = lists(data_dir, utterances)  # read once for both models
    for model_name, path in models.items():
        variants = {"fp32": load_artifact(path)}
        variants["bf16"] = load_artifact(path, precision="bf16")
        variants["int8 (torch.ao dynamic)"] = int8_dynamic(variants["fp32"])
        for list_name, (tune_part, eval_part) in every_list.items():
            tune_scores = score_sentences(variants["fp32"], sentences_of(tune_part))
            tune_arrays = build_arrays(tune_part, tune_scores.log_probs, tune_scores.num_oov)
            tune_table = error_table(tune_part)
            weights = tune_weights(tune_arrays, tune_table.hyp_errors, tune_table.ref_words).weights
            eval_sentences = sentences_of(eval_part)
            eval_table = error_table(eval_part)
            reference, reference_choice, reference_lm_only = None, None, None
            timings = interleaved_best_seconds(
                {precision: (lambda a=artifact, s=eval_sentences: score_sentences(a, s))
                 for precision, artifact in variants.items()}, repeats)
            for precision, artifact in variants.items():
                seconds = timings[precision]
                scores = score_sentences(artifact, eval_sentences)
                arrays = build_arrays(eval_part, scores.log_probs, scores.num_oov)
                choice = best_hypotheses(arrays, total_scores(arrays, weights))
                # the strictest check: our LM alone picks the 1-best (the tuned weights may give it
                # little or no say, and then no precision could change a choice)
                lm_only = best_hypotheses(arrays, total_scores(arrays, LM_ONLY))
                if reference is None:
                    reference, reference_choice, reference_lm_only = scores.log_probs, choice, lm_only
                change = np.abs(scores.log_probs - reference)
                wer = eval_table.wer_of(choice)
                rows.append({
                    "model": model_name, "list": list_name, "precision": precision,
                    "hypotheses": len(eval_sentences), "utterances": len(eval_part),
                    "hyps_per_second": len(eval_sentences) / seconds,
                    "logprob_change": {"mean_abs": float(change.mean()), "median": float(np.median(change)),
                                       "p99": float(np.quantile(change, 0.99)), "max": float(change.max())},
                    "one_best_changed_share": float((choice != reference_choice).mean()),
                    "wer": wer.wer, "errors": wer.errors, "ref_words": wer.ref_words,
                    "lm_only_one_best_changed_share": float((lm_only != reference_lm_only).mean()),
                    "lm_only_wer": eval_table.wer_of(lm_only).wer,
                    "weights": weights.to_dict(),
                    "weight_bytes": weight_bytes(artifact.model) if precision != "int8 (torch.ao dynamic)" else None,
                })
                fp32 = next(r for r in rows if r["model"] == model_name and r["list"] == list_name
                            and r["precision"] == "fp32")
                rows[-1]["speedup"] = rows[-1]["hyps_per_second"] / fp32["hyps_per_second"]
                print(f"{model_name:10s} {list_name:18s} {precision:24s} {rows[-1]['hyps_per_second']:8.0f} hyps/s"
                      f" x{rows[-1]['speedup']:.2f}  |dlogp| {change.mean():.4f} (max {change.max():.3f})"
                      f"  1-best changed {100 * rows[-1]['one_best_changed_share']:.2f} %  WER {100 * wer.wer:.2f}"
                      f"  LM alone: changed {100 * rows[-1]['lm_only_one_best_changed_share']:.2f} %"
                      f" WER {100 * rows[-1]['lm_only_wer']:.2f}",
                      flush=True)
    return rows


def markdown(result: dict) -> str:
    """The RESULTS table of a saved run."""
    lines = ["| model | list | precision | hyps/s | speed-up | mean abs change (nats) | p99 | max |"
             " 1-best changed | WER % | LM alone: 1-best changed | LM alone: WER % | weights MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        c = r["logprob_change"]
        mb = "" if r["weight_bytes"] is None else f"{r['weight_bytes'] / 2**20:.1f}"
        lines.append(f"| {r['model']} | {r['list']} ({r['utterances']} utt.) | {r['precision']} | {r['hyps_per_second']:,.0f}"
                     f" | {r['speedup']:.2f}x | {c['mean_abs']:.4f} | {c['p99']:.4f} | {c['max']:.3f}"
                     f" | {100 * r['one_best_changed_share']:.2f} % | {100 * r['wer']:.2f}"
                     f" | {100 * r['lm_only_one_best_changed_share']:.2f} % | {100 * r['lm_only_wer']:.2f} | {mb} |")
    m = result["matmul"]
    lines.append("")
    lines.append(f"bf16/fp32 matrix multiply ({m['shape']}): {m['bf16_speedup']:.2f}x;"
                 f" machine: {result['machine']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--work", type=Path, default=Path("runs/precision"))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--epochs-small", type=int, default=2)
    parser.add_argument("--epochs-large", type=int, default=1)
    parser.add_argument("--utterances", type=int, default=400, help="per list and part")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-max-words", type=int, default=0, help="train on a prefix of the text (0: all)")
    parser.add_argument("--small-model", type=Path, help="an existing 2 x 256 artifact to use instead of training one"
                        " (e.g. runs/librispeech/lm-recentered)")
    parser.add_argument("--train-only", action="store_true", help="train the models, measure nothing")
    parser.add_argument("--report", type=Path, help="print the Markdown table of a saved run (its --out) and stop")
    args = parser.parse_args()
    if args.report:
        print(markdown(json.loads(args.report.read_text())))
        return

    corpus = prepare(args.data_dir, args.work)
    train_text = corpus["train"]
    if args.train_max_words:
        train_text = args.work / f"train-{args.train_max_words}.txt"
        if not train_text.exists():
            kept, words = [], 0
            for line in corpus["train"].read_text().splitlines():
                kept.append(line)
                words += len(line.split())
                if words >= args.train_max_words:
                    break
            train_text.write_text("\n".join(kept) + "\n")
    models = {}
    for name, layers, hidden, epochs in (("2x256", 2, 256, args.epochs_small), ("1x1024", 1, 1024, args.epochs_large)):
        if name == "2x256" and args.small_model:
            models[name] = args.small_model
            continue
        config = TrainConfig(train_path=str(train_text), dev_path=str(corpus["valid"]), out_dir=str(args.work / name),
                             loss="nce", embedding_dim=256, hidden_dim=hidden, num_layers=layers, batch_size=16,
                             max_epochs=epochs)
        models[name] = run(config)
    if args.train_only:
        return

    result = {"date": time.strftime("%Y-%m-%d"), "machine": cpu_description(), "matmul": matmul_ratio(),
              "settings": {k: str(v) for k, v in vars(args).items()}}
    print(f"bf16/fp32 matrix multiply: x{result['matmul']['bf16_speedup']:.2f}", flush=True)
    result["rows"] = measure(models, args.data_dir, args.utterances, args.repeats)
    text = json.dumps(result, indent=2) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
