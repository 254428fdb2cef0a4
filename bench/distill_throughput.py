"""Distillation and bf16 training throughput: what a student's epoch costs with its teachers, and
what mixed precision buys, measured side by side in one run.

    python bench/distill_throughput.py --out docs/bench/distill_throughput.json

The trainer's own code (`training.objective.TrainingObjective`, `training.sgd.sgd_step`, bf16
autocast as `training.train` applies it) on synthetic ids of a PTB-sized vocabulary, one SGD
step per batch, words/s as the median step after warm-up, the best of interleaved rounds:

1. Teachers: --members mixture-of-softmaxes LSTMs (1 x --teacher-hidden, K = --experts) and
   a 1 x --student-hidden student, in each of --student-precisions (each row's cost against
   `ce` in the same precision). Rows: the student alone (`ce`, `nce`); distilled with the
   teachers' full distributions at every step (`tr live`: their LSTM features cached, the
   K x V softmaxes computed per step, the trainer's path with --teacher-top-k 0); distilled
   from the teachers' stored top k (`tr top-k`, `nce-tr top-k`: `training.teacher_cache`,
   memory-mapped, built once). The goal: a distilled epoch at most 1.5x a plain one.
   Also the one-time cost of building the store, as a share of one `ce` epoch, and `tr top-k`
   with the student's logits at the k words formed from their output rows (`[output rows]`)
   instead of gathered from the logits as the trainer does (training/objective.py), and with
   the gather and the log-sum-exp as two autograd ops (`[autograd gather]`) instead of the
   trainer's one function (training.losses.log_sum_exp_and_picked).
   `ce` is the trainer's cross-entropy (training.losses.cross_entropy_loss: lse(o) - o_y in one
   autograd function); `ce [F.cross_entropy]` times PyTorch's log-softmax-then-NLL beside it.
2. Precision: fp32 against bf16 (autocast on the LSTM) for --bf16-models (CE and NCE),
   on a CPU with bf16 arithmetic (the goal: at least 1.5x).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.objective_variants import AutogradPickedLogits, LogSoftmaxCrossEntropy, RowsPickedLogits
from rescorer.model import LstmLanguageModel, ModelConfig, detach_state
from rescorer.precision import native_bf16
from training.batches import BpttBatches
from training.noise import UnigramNoise
from training.objective import TrainingObjective
from training.reference import FrozenReference, ReferenceFeatures
from training.sgd import sgd_step
from training.teacher_cache import TeacherTopK


def zipf_counts(vocab_size: int) -> np.ndarray:
    return (1e6 / np.arange(1, vocab_size + 1)).astype(np.int64) + 1


def model(vocab: int, hidden: int, layers: int = 1, kind: str = "softmax", experts: int = 1) -> LstmLanguageModel:
    return LstmLanguageModel(ModelConfig(vocab_size=vocab, embedding_dim=hidden, hidden_dim=hidden,
                                         num_layers=layers, dropout=0.0, output_kind=kind, experts=experts))


class Step:
    """One training step of the trainer's objective over a fixed list of batches."""

    def __init__(self, objective: TrainingObjective, teacher_windows=None, noise_samples: int = 256,
                 precision: str = "fp32"):
        self.objective, self.teacher_windows, self.precision = objective, teacher_windows, precision
        self.samples, self.state = noise_samples, None
        self.generator = torch.Generator().manual_seed(0)

    def __call__(self, index: int, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        noise = self.objective.noise
        samples = noise.sample(self.samples, self.generator) if noise is not None else None
        teacher = self.teacher_windows[index] if self.teacher_windows is not None else None
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            loss, state = self.objective(inputs, targets, self.state, samples, teacher)
        self.state = detach_state(state)
        self.objective.model.zero_grad(set_to_none=True)
        (loss.float() / inputs.shape[0]).backward()
        sgd_step(self.objective.model.parameters(), lr=0.1, clip_norm=15.0, weight_decay=0.0)


def seconds_per_step(step: Step, batches: list, warmup: int) -> float:
    for i, (inputs, targets) in enumerate(batches[:warmup]):
        step(i, inputs, targets)
    times = []
    for i, (inputs, targets) in enumerate(batches[warmup:], start=warmup):
        start = time.perf_counter()
        step(i, inputs, targets)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab-size", type=int, default=10_000)
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--teacher-hidden", type=int, default=200)
    parser.add_argument("--experts", type=int, default=2)
    parser.add_argument("--student-hidden", type=int, default=72)
    parser.add_argument("--top-k", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--student-precisions", nargs="+", choices=("fp32", "bf16"), default=["fp32", "bf16"],
                        help="the student rows (ce, nce, tr and nce-tr top-k) in each; bf16 where the CPU has it")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--bptt", type=int, default=35)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bf16-models", nargs="+", default=["ce:1x256", "nce:1x256", "ce:2x512", "nce:2x512"],
                        help="LOSS:LAYERSxHIDDEN")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.manual_seed(0)
    V, n = args.vocab_size, args.warmup + args.steps
    ids = np.random.default_rng(0).integers(1, V, size=args.batch_size * args.bptt * n + 1)
    layout = BpttBatches(ids, args.batch_size, args.bptt)
    batches = list(layout)
    tokens = args.batch_size * args.bptt
    noise = UnigramNoise(zipf_counts(V))

    teachers = FrozenReference([model(V, args.teacher_hidden, kind="mos", experts=args.experts)
                                for _ in range(args.members)])
    features = list(ReferenceFeatures(teachers, layout, cached=True).epoch())
    bf16 = native_bf16(torch.device("cpu"))
    precisions = [p for p in args.student_precisions if p == "fp32" or bf16]
    suffix = {"fp32": "", "bf16": " bf16"}
    steps = {}
    for p in precisions:
        steps[f"ce (no teacher){suffix[p]}"] = Step(TrainingObjective(model(V, args.student_hidden), "ce", 0),
                                                    precision=p)
        log_softmax_way = LogSoftmaxCrossEntropy(model(V, args.student_hidden), "ce", 0)  # F.cross_entropy
        steps[f"ce (no teacher) [F.cross_entropy]{suffix[p]}"] = Step(log_softmax_way, precision=p)
        steps[f"nce (no teacher){suffix[p]}"] = Step(
            TrainingObjective(model(V, args.student_hidden, kind="self_normalized"), "nce", 0, noise), precision=p)
    steps["tr live (full teachers every step)"] = Step(
        TrainingObjective(model(V, args.student_hidden), "tr", 0, reference=teachers), features)
    store_seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        stores = {}
        for k in args.top_k:
            started = time.perf_counter()
            stores[k] = TeacherTopK(teachers, layout, k, Path(tmp) / f"top{k}", {"bench": True}, bos_id=0)
            store_seconds[k] = time.perf_counter() - started
            windows = list(stores[k].epoch())
            for p in precisions:
                steps[f"tr top-{k}{suffix[p]}"] = Step(
                    TrainingObjective(model(V, args.student_hidden), "tr", 0, reference=teachers), windows, precision=p)
                rows_way = RowsPickedLogits(model(V, args.student_hidden), "tr", 0, reference=teachers)
                steps[f"tr top-{k} [output rows]{suffix[p]}"] = Step(rows_way, windows, precision=p)
                autograd_way = AutogradPickedLogits(model(V, args.student_hidden), "tr", 0, reference=teachers)
                steps[f"tr top-{k} [autograd gather]{suffix[p]}"] = Step(autograd_way, windows, precision=p)
                steps[f"nce-tr top-{k}{suffix[p]}"] = Step(
                    TrainingObjective(model(V, args.student_hidden, kind="self_normalized"), "nce-tr", 0, noise,
                                      reference=teachers), windows, precision=p)
        for spec in args.bf16_models:
            loss, shape = spec.split(":")
            layers, hidden = (int(x) for x in shape.split("x"))
            kind = "self_normalized" if loss == "nce" else "softmax"
            for precision in ("fp32", "bf16") if bf16 else ("fp32",):
                steps[f"{spec} {precision}"] = Step(TrainingObjective(model(V, hidden, layers, kind), loss, 0,
                                                                      noise if loss == "nce" else None),
                                                    precision=precision)
        best = {name: float("inf") for name in steps}
        for _ in range(args.rounds):
            for name, step in steps.items():
                best[name] = min(best[name], seconds_per_step(step, batches, args.warmup))
    wps = {name: tokens / s for name, s in best.items()}
    plain = wps["ce (no teacher)"]

    def against(name: str) -> str:  # a student row against `ce` in its own precision; the rest against fp32 `ce`
        bf16_student = name.endswith(" bf16") and not name.startswith(tuple(args.bf16_models))
        return "ce (no teacher) bf16" if bf16_student else "ce (no teacher)"

    rows = [{"row": name, "words_per_second": round(w, 1), "epoch_cost_vs_ce": wps[against(name)] / w,
             "against": against(name)} for name, w in wps.items()]
    for row in rows:
        print(f"{row['row']:40s} {row['words_per_second']:9.0f} words/s  epoch cost {row['epoch_cost_vs_ce']:.2f}x"
              f" {row['against']}", flush=True)
    store = {k: {"seconds": s, "share_of_a_ce_epoch": s / (layout.tokens_per_epoch / plain)}
             for k, s in store_seconds.items()}
    for k, s in store.items():
        print(f"building the top-{k} store once: {s['seconds']:.2f} s for {layout.tokens_per_epoch} positions"
              f" ({s['share_of_a_ce_epoch']:.2f} of a ce epoch over them)")
    speedups = {}
    if bf16:
        for spec in args.bf16_models:
            speedups[spec] = wps[f"{spec} bf16"] / wps[f"{spec} fp32"]
            print(f"bf16 / fp32 {spec}: {speedups[spec]:.2f}x")
    result = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "torch": torch.__version__, "threads": torch.get_num_threads(), "native_bf16": bf16},
              "settings": vars(args) | {"out": str(args.out)}, "rows": rows, "store": store,
              "bf16_speedup": speedups}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
