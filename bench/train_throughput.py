"""Training throughput: cross-entropy vs NCE, the project's trainer vs a bare PyTorch loop.

    python bench/train_throughput.py --out docs/bench/train_throughput.json

One run measures, side by side and interleaved round by round (the machines are noisy),
words/s of one SGD step on synthetic ids (batch x bptt, 1-layer LSTM, embedding = hidden)
for every (vocabulary size, hidden size, loss) and for two implementations:
- trainer: `training.objective.TrainingObjective` + `training.sgd.sgd_step`, the code the
  training loop runs (sparse row gradients, global clipping, weight decay);
- bare: the shortest PyTorch loop for the same computation (torch.optim.SGD, no clipping).
It reports each implementation's NCE/CE speed-up and the share of the bare speed-up that the
trainer keeps.

NCE+KLD (paper 1, Eq. 21; `rescorer-train adapt`) is measured beside them on the same model
instance as trainer_nce (so the ratio is the loss's cost, not that of two differently initialized
models) and the same batches, against a frozen reference of the same size, gamma 0.5: `trainer_nce_kld` as the
training loop runs it (the reference's features computed once per run for the fixed batch
layout, `training.reference.ReferenceFeatures`), and `trainer_nce_kld_recomputed` with the
reference's LSTM run at every step. `kld_vs_nce` is trainer_nce_kld / trainer_nce (the aim is
at least 0.9); `kld_cache_share` is what computing the cache once costs, per token, as a share
of one NCE epoch (divide by the number of epochs for its share of a run).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rescorer.model import LstmLanguageModel, ModelConfig, detach_state
from training.noise import UnigramNoise
from training.objective import TrainingObjective
from training.reference import FrozenReference
from training.sgd import sgd_step


def zipf_counts(vocab_size: int) -> np.ndarray:
    return (1e6 / np.arange(1, vocab_size + 1)).astype(np.int64) + 1


class TrainerStep:
    """loss: ce, nce, nce_kld (reference features cached per batch) or nce_kld_recomputed."""

    def __init__(self, loss: str, vocab_size: int, hidden: int, samples: int, model: LstmLanguageModel | None = None):
        nce = loss.startswith("nce")
        config = ModelConfig(vocab_size=vocab_size, embedding_dim=hidden, hidden_dim=hidden, num_layers=1,
                             dropout=0.0, output_kind="self_normalized" if nce else "softmax")
        self.model = model if model is not None else LstmLanguageModel(config)
        noise = UnigramNoise(zipf_counts(vocab_size)) if nce else None
        self.reference = FrozenReference([LstmLanguageModel(config)]) if loss.startswith("nce_kld") else None
        self.objective = TrainingObjective(self.model, "nce" if nce else "ce", bos_id=0, noise=noise,
                                           sparse_grads=True, reference=self.reference,
                                           gamma=0.5 if self.reference else 1.0)
        self.recompute = loss == "nce_kld_recomputed"
        self.noise, self.samples, self.state, self.reference_state = noise, samples, None, None
        self.cache: dict[int, torch.Tensor] = {}
        self.generator = torch.Generator().manual_seed(0)

    def build_cache(self, batches) -> float:
        """The reference's features for every batch, state carried, as the trainer does once per
        run (training.reference.ReferenceFeatures); returns the seconds it took."""
        start, state = time.perf_counter(), None
        for inputs, _ in batches:
            self.cache[id(inputs)], state = self.reference.features(inputs, state)
        return time.perf_counter() - start

    def __call__(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        samples = self.noise.sample(self.samples, self.generator) if self.noise else None
        features = None
        if self.reference is not None:
            if self.recompute:
                features, self.reference_state = self.reference.features(inputs, self.reference_state)
            else:
                features = self.cache[id(inputs)]
        loss, state = self.objective(inputs, targets, self.state, samples, features)
        self.state = detach_state(state)
        self.model.zero_grad(set_to_none=True)
        (loss / inputs.shape[0]).backward()
        sgd_step(self.model.parameters(), lr=0.1, clip_norm=15.0, weight_decay=1e-6)


class BareStep:
    """The minimal loop: nn.Embedding/nn.LSTM, full logits or gathered rows, torch.optim.SGD."""

    def __init__(self, loss: str, vocab_size: int, hidden: int, samples: int):
        self.embedding = nn.Embedding(vocab_size, hidden, sparse=True)
        self.lstm = nn.LSTM(hidden, hidden, batch_first=True)
        self.out_w = nn.Parameter(torch.empty(vocab_size, hidden).uniform_(-0.1, 0.1))
        self.out_b = nn.Parameter(torch.zeros(vocab_size, 1))  # (V, 1): rows gathered with sparse grads
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        self.params = [self.embedding.weight, *self.lstm.parameters(), self.out_w, self.out_b]
        self.optimizer = torch.optim.SGD(self.params, lr=0.1)
        self.loss, self.samples, self.state = loss, samples, None
        counts = torch.as_tensor(zipf_counts(vocab_size), dtype=torch.float).pow(0.75)
        self.probs = counts / counts.sum()
        self.log_nu_pn = torch.log(samples * self.probs)
        self.log_z = float(np.log(vocab_size))
        self.generator = torch.Generator().manual_seed(0)

    def __call__(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        h, state = self.lstm(self.embedding(inputs), self.state)
        self.state = (state[0].detach(), state[1].detach())
        h, y = h.reshape(-1, h.shape[-1]), targets.reshape(-1)
        if self.loss == "ce":
            loss = F.cross_entropy(F.linear(h, self.out_w, self.out_b[:, 0]), y)
        else:
            s = torch.multinomial(self.probs, self.samples, replacement=True, generator=self.generator)
            wy, by = F.embedding(y, self.out_w, sparse=True), F.embedding(y, self.out_b, sparse=True)
            ws, bs = F.embedding(s, self.out_w, sparse=True), F.embedding(s, self.out_b, sparse=True)
            d_y = (h * wy).sum(-1) + by[:, 0] - self.log_z - self.log_nu_pn[y]
            d_s = h @ ws.T + bs[:, 0] - self.log_z - self.log_nu_pn[s]
            loss = -(F.logsigmoid(d_y) + F.logsigmoid(-d_s).sum(-1)).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def measure(step, batches, warmup: int, steps: int) -> float:
    """Seconds per step (median) after warm-up."""
    for inputs, targets in batches[:warmup]:
        step(inputs, targets)
    times = []
    for inputs, targets in batches[warmup : warmup + steps]:
        start = time.perf_counter()
        step(inputs, targets)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab-sizes", type=int, nargs="+", default=[10_000, 58_000])
    parser.add_argument("--hidden-sizes", type=int, nargs="+", default=[200, 1024])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--bptt", type=int, default=20)
    parser.add_argument("--noise-samples", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repetitions; the best round counts")
    parser.add_argument("--out", type=Path, help="write every figure as JSON here")
    args = parser.parse_args()

    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    tokens = args.batch_size * args.bptt
    rows = []
    for vocab_size in args.vocab_sizes:
        for hidden in args.hidden_sizes:
            n = args.warmup + args.steps
            ids = torch.randint(1, vocab_size, (n, args.batch_size, args.bptt + 1))
            batches = [(b[:, :-1], b[:, 1:]) for b in ids]
            steps = {(impl, loss): cls(loss, vocab_size, hidden, args.noise_samples)
                     for impl, cls in (("trainer", TrainerStep), ("bare", BareStep)) for loss in ("ce", "nce")}
            # the same model as trainer_nce: the comparison is the loss's cost, not two models'
            nce_model = steps[("trainer", "nce")].model
            steps |= {("trainer", loss): TrainerStep(loss, vocab_size, hidden, args.noise_samples, model=nce_model)
                      for loss in ("nce_kld", "nce_kld_recomputed")}
            cache_seconds = steps[("trainer", "nce_kld")].build_cache(batches)
            best = {key: float("inf") for key in steps}
            for _ in range(args.rounds):
                for key, step in steps.items():
                    best[key] = min(best[key], measure(step, batches, args.warmup, args.steps))
            wps = {f"{impl}_{loss}": tokens / best[(impl, loss)] for impl, loss in best}
            row = {"vocab_size": vocab_size, "hidden": hidden, **{k: round(v, 1) for k, v in wps.items()}}
            row["trainer_speedup"] = wps["trainer_nce"] / wps["trainer_ce"]
            row["bare_speedup"] = wps["bare_nce"] / wps["bare_ce"]
            row["kept"] = row["trainer_speedup"] / row["bare_speedup"]
            row["kld_vs_nce"] = wps["trainer_nce_kld"] / wps["trainer_nce"]
            row["kld_recomputed_vs_nce"] = wps["trainer_nce_kld_recomputed"] / wps["trainer_nce"]
            row["kld_cache_share"] = (cache_seconds / (len(batches) * tokens)) * wps["trainer_nce"]
            rows.append(row)
            print(f"V={vocab_size:6d} H={hidden:5d}  words/s trainer CE {wps['trainer_ce']:8.0f} NCE"
                  f" {wps['trainer_nce']:8.0f} (x{row['trainer_speedup']:.1f}) | bare CE {wps['bare_ce']:8.0f}"
                  f" NCE {wps['bare_nce']:8.0f} (x{row['bare_speedup']:.1f}) | kept {row['kept']:.0%}"
                  f" | NCE+KLD {wps['trainer_nce_kld']:8.0f} ({row['kld_vs_nce']:.2f}x NCE; reference every step"
                  f" {row['kld_recomputed_vs_nce']:.2f}x; cache {row['kld_cache_share']:.0%} of an epoch)", flush=True)
    result = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "torch": torch.__version__, "threads": torch.get_num_threads()},
              "settings": vars(args) | {"out": str(args.out)}, "rows": rows}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
