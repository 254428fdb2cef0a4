"""The divergence guard: a run that has produced a garbage model stops before it saves one.

A learning rate that is too high does not always overflow to inf: on some CPUs the same run
stays finite and ends near (or worse than) a uniform model. Each rule below catches one way a
run goes wrong, finite or not; any of them stops the run with `TrainingDivergedError` (exit 2
from the CLI) before the epoch's checkpoint, best weights or artifact are written, so the last
good checkpoint is what remains.

Per step (`check_step`): a non-finite loss or gradient norm.

Per epoch (`check_epoch`):
- the training loss per token or the dev perplexity is not finite;
- the dev perplexity is over UNIFORM_FACTOR times a uniform distribution's (V, the vocabulary
  size);
- the training loss per token is over LOSS_FACTOR (NCE_LOSS_FACTOR) times an ignorant model's
  while the dev perplexity is not clearly better than uniform (over CLEARLY_GOOD * V), or over
  LOSS_JUMP times it whatever the dev perplexity: ln V for the
  normalized losses (ce, kl, interp, tr: cross-entropies in nats, tr's R(y) weight adding a
  few per cent), and for the NCE losses (nce, nce-tr, NCE+KLD) the loss of the noise
  distribution used as the model, ln(1 + S) + S ln(1 + 1 / S) with S noise samples (its score
  at every word is ln q(w), so Delta = -ln S everywhere in Eq. 12);
- the training loss per token over LOSS_JUMP times the previous epoch's, or the dev
  perplexity over DEV_JUMP times the previous epoch's (a loss rising by orders of magnitude);
- adaptation (`--init`): the dev perplexity over INIT_FACTOR times the init's on the same dev
  text; adaptation starts from a model that already fits, so an epoch that makes it that much
  worse has destroyed it rather than adapted it.

At the end (`check_final`): the best epoch's dev perplexity must be below V. A model no
better than a uniform distribution ranks hypotheses no better than not rescoring at all, so
no artifact is written from it, whatever the cause (a rate too high, or too few epochs).

Why these factors: first epochs of 16-unit models on the demo corpus (V = 131), the guard
switched off (`python experiments/divergence_factors.py --out docs/results/divergence_factors.json`).
A healthy first epoch (--lr 1) averages 0.75-0.79 ln V (ce, kl, tr) and 0.76-1.00 times the
noise model's loss (nce, nce-tr, NCE+KLD adaptation); a diverged one (--lr 30) 2.11-2.34 ln V
and 2.52-2.63 times, with a dev perplexity of 1.9 V or more. `make demo`'s mixture-of-softmaxes
teacher averages 1.30 ln V over a healthy first epoch (dev perplexity 0.17 V), so the loss rule
(1.25 ln V; 2 for the NCE losses) needs the dev perplexity's agreement (over V / 2). The first
epoch of a small model can end worse than uniform and recover (a 16-unit NCE model after one
epoch at batch 64; tests/test_divergence.py resumes it to an artifact), so the per-epoch bound on the dev
perplexity is 2 V and the strict bound V applies to what is saved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

LOSS_FACTOR = 1.25  # a training loss per token this many times an ignorant model's stops the run
NCE_LOSS_FACTOR = 2.0  # ... the same for the NCE losses, whose random start lies above the noise model's
UNIFORM_FACTOR = 2.0  # ... and a dev perplexity this many times a uniform model's (V)
CLEARLY_GOOD = 0.5  # the loss rule speaks unless the dev perplexity is below this share of V (or the loss is 10x)
LOSS_JUMP = 10.0  # ... or this many times the previous epoch's
DEV_JUMP = 4.0  # a dev perplexity this many times the previous epoch's stops the run
INIT_FACTOR = 2.0  # adaptation: a dev perplexity this many times the init's stops the run
NCE_LOSSES = ("nce", "nce-tr")  # their training loss is NCE's (Eq. 12, 21), not a cross-entropy


class TrainingDivergedError(RuntimeError):
    """A non-finite loss or gradient, or an epoch whose model is garbage by one of the guard's
    rules; the last good checkpoint is left untouched and the run stops (no silent
    continuation, no automatic roll-back)."""


def ignorant_loss_per_token(loss: str, vocab_size: int, noise_samples: int) -> float:
    """The training loss per token of a model that has learnt nothing (see the module's docstring)."""
    if loss in NCE_LOSSES:
        s = noise_samples
        return math.log1p(s) + s * math.log1p(1.0 / s)
    return math.log(vocab_size)


@dataclass(frozen=True)
class DivergenceGuard:
    loss: str
    vocab_size: int
    noise_samples: int
    checkpoint_path: Path
    init_dev_ppl: float | None = None  # adaptation: the init's dev perplexity

    def check_step(self, batch_loss: float, grad_norm: float, step: int, epoch: int, lr: float,
                   last_good_epoch: int) -> None:
        if math.isfinite(batch_loss) and math.isfinite(grad_norm):
            return
        what = "loss" if not math.isfinite(batch_loss) else "gradient"
        raise TrainingDivergedError(
            f"non-finite {what} at step {step} (epoch {epoch}); {self._kept(last_good_epoch)}. Hint: lower --lr"
            f" (now {lr:g}) or --clip-norm, or look for corrupt input")

    def check_epoch(self, epoch: int, lr: float, train_loss: float, dev_ppl: float, history: list[dict],
                    last_good_epoch: int) -> None:
        """Raise TrainingDivergedError when the epoch just trained left a garbage model."""
        why = self.problem(train_loss, dev_ppl, history[-1] if history else None)
        if why is None:
            return
        raise TrainingDivergedError(
            f"training diverged in epoch {epoch}: {why}; the run stops and {self._kept(last_good_epoch)}."
            f" Start it again in a new --out with a lower --lr (now {lr:g}; try {lr / 4:g}) or a smaller"
            " --clip-norm")

    def problem(self, train_loss: float, dev_ppl: float, previous: dict | None) -> str | None:
        """What is wrong with an epoch's figures (None: nothing)."""
        v = self.vocab_size
        ignorant = ignorant_loss_per_token(self.loss, v, self.noise_samples)
        if not math.isfinite(dev_ppl):
            return f"dev perplexity {dev_ppl} is not finite"
        if not math.isfinite(train_loss):
            return f"training loss per token {train_loss} is not finite"
        if previous is not None:
            before_loss, before_ppl = previous["train_loss_per_token"], previous["dev_normalized_ppl"]
            if before_loss > 0 and train_loss > LOSS_JUMP * before_loss:
                return (f"training loss per token {train_loss:.4g} is {train_loss / before_loss:.1f} times"
                        f" epoch {previous['epoch']}'s {before_loss:.4g}")
            if dev_ppl > DEV_JUMP * before_ppl:
                return (f"dev perplexity {dev_ppl:.4g} is {dev_ppl / before_ppl:.1f} times epoch"
                        f" {previous['epoch']}'s {before_ppl:.4g}")
        if self.init_dev_ppl is not None and dev_ppl > INIT_FACTOR * self.init_dev_ppl:
            return (f"dev perplexity {dev_ppl:.4g} is {dev_ppl / self.init_dev_ppl:.1f} times the init's"
                    f" {self.init_dev_ppl:.4g}")
        if dev_ppl > UNIFORM_FACTOR * v:
            return (f"dev perplexity {dev_ppl:.4g} is over {UNIFORM_FACTOR:g} times a uniform model's ({v}, the"
                    " vocabulary size)")
        factor = NCE_LOSS_FACTOR if self.loss in NCE_LOSSES else LOSS_FACTOR
        if train_loss > LOSS_JUMP * ignorant or (train_loss > factor * ignorant and dev_ppl > CLEARLY_GOOD * v):
            return (f"training loss per token {train_loss:.4g} is over {factor:g} times an ignorant"
                    f" model's ({ignorant:.4g}: {self._ignorant_name()}) and the dev perplexity {dev_ppl:.4g}"
                    f" is not clearly better than a uniform model's ({v})")
        return None

    def _ignorant_name(self) -> str:
        if self.loss in NCE_LOSSES:
            return f"the noise distribution's NCE loss with {self.noise_samples} noise samples"
        return f"ln V, a uniform model over {self.vocab_size} words"

    def check_final(self, history: list[dict], lr: float) -> None:
        """Before the artifact is written: the best epoch's model beats a uniform distribution."""
        best = min(history, key=lambda r: r["dev_normalized_ppl"], default=None)
        if best is not None and best["dev_normalized_ppl"] < self.vocab_size:
            return
        figure = "no epoch was trained" if best is None else \
            f"the best epoch ({best['epoch']}) has dev perplexity {best['dev_normalized_ppl']:.4g}"
        raise TrainingDivergedError(
            f"training produced no model better than a uniform distribution: {figure}, and a uniform model's is"
            f" {self.vocab_size} (the vocabulary size); no artifact is written and the checkpoint is kept. Train"
            f" longer (--resume with a larger --max-epochs) or start again with a lower --lr (last {lr:g})")

    def _kept(self, last_good_epoch: int) -> str:
        if last_good_epoch:
            return f"the last good checkpoint ({self.checkpoint_path}, epoch {last_good_epoch}) is kept"
        return "no epoch finished well, so no checkpoint was written"
