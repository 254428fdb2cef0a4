"""Held-out evaluation: normalized and self-normalized perplexity, self-normalization statistics.

- normalized perplexity: full softmax over V (comparable across every model kind);
- self-normalized perplexity: exp(-mean s(y|h)) with s = o(h)_y - log_z, what the rescorer uses;
- log Z(h) = logsumexp_w s(w|h) at every held-out position: its mean, variance and mean |.|
  (docs/ARCHITECTURE.md, section 3). A perfectly self-normalized model has log Z(h) = 0 everywhere.

Sentences are scored independently from a zero state (the rescoring condition), so these
perplexities are slightly higher than carried-state figures quoted for PTB in the literature.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from rescorer.artifact import set_log_z
from rescorer.errors import InputError
from rescorer.model import LOGIT_CHUNK, LstmLanguageModel
from rescorer.sentence_batches import make_sentence_batches, step_cost_for


def _perplexity(log_prob: float, tokens: int) -> float:
    """exp(-log_prob / tokens); inf past float range (a diverged model), never OverflowError."""
    exponent = -log_prob / tokens
    return math.exp(exponent) if exponent < 709.0 else math.inf


@dataclass(frozen=True)
class EvaluationResult:
    num_sentences: int
    num_tokens: int  # predicted tokens: words + one </s> per sentence
    normalized_log_prob: float  # sum of log softmax(o(h))_y
    self_normalized_log_prob: float  # sum of s(y|h)
    log_z_mean: float
    log_z_var: float
    log_z_abs_mean: float
    log_z: float  # the model's constant when measured
    num_oov: int = 0
    num_words: int | None = None  # a subword LM's text in words: its perplexity per word beside per piece

    @property
    def normalized_ppl(self) -> float:
        return _perplexity(self.normalized_log_prob, self.num_tokens)

    @property
    def per_word_ppl(self) -> float:
        """exp(-log P / (words + one </s> per sentence)): comparable between word and subword LMs."""
        words = self.num_tokens - self.num_sentences if self.num_words is None else self.num_words
        return _perplexity(self.normalized_log_prob, words + self.num_sentences)

    @property
    def self_normalized_ppl(self) -> float:
        return _perplexity(self.self_normalized_log_prob, self.num_tokens)

    def to_dict(self) -> dict:
        out = asdict(self)
        if self.num_words is None:  # a word LM: its tokens are the words
            del out["num_words"]
        out["normalized_ppl"] = self.normalized_ppl
        out["self_normalized_ppl"] = self.self_normalized_ppl
        out["per_word_ppl"] = self.per_word_ppl
        return out


@torch.inference_mode()
def evaluate(
    model: LstmLanguageModel,
    sentences: Sequence[Sequence[int]],
    bos_id: int,
    eos_id: int,
    max_tokens: int = 4096,
    num_oov: int = 0,
    num_words: int | None = None,
) -> EvaluationResult:
    """Score every sentence (token ids, no `<s>`/`</s>`) with a full softmax and s(w|h);
    `num_words`: the words the tokens spell, where they are subword pieces."""
    if not sentences:
        raise InputError("nothing to evaluate: no sentences")
    was_training = model.training
    model.eval()
    device = model.device
    log_z = float(model.log_z)
    mixture = model.config.output_kind == "mos"
    chunk = max(LOGIT_CHUNK // model.config.experts, 1)  # a mos holds K (n, V) blocks
    norm_sum = self_sum = 0.0
    z_sum = z_sq_sum = z_abs_sum = 0.0
    count = 0
    for batch in make_sentence_batches(sentences, bos_id, eos_id, max_tokens, step_cost_for(device)):
        features, _ = model.features(batch.inputs.to(device))  # (B, T, D)
        mask = batch.mask.to(device)
        features = features[mask]  # (N, D)
        targets = batch.targets.to(device)[mask]  # (N,)
        for start in range(0, len(targets), chunk):
            y = targets[start : start + chunk]
            if mixture:  # normalized by construction: log Z(h) = 0, s = log p
                log_p = model.log_probs(features[start : start + chunk]).double()  # (n, V)
                target_log_p = float(log_p.gather(1, y.unsqueeze(1)).sum())
                norm_sum += target_log_p
                self_sum += target_log_p
                count += len(y)
                continue
            logits = model.logits(features[start : start + chunk]).double()  # (n, V)
            target_logit = logits.gather(1, y.unsqueeze(1)).squeeze(1)  # (n,)
            log_z_h = torch.logsumexp(logits, dim=1) - log_z  # (n,) log Z(h) of s(.|h)
            self_sum += float((target_logit - log_z).sum())
            norm_sum += float((target_logit - log_z - log_z_h).sum())
            z_sum += float(log_z_h.sum())
            z_sq_sum += float((log_z_h**2).sum())
            z_abs_sum += float(log_z_h.abs().sum())
            count += len(y)
    model.train(was_training)
    mean = z_sum / count
    return EvaluationResult(
        num_sentences=len(sentences), num_tokens=count,
        normalized_log_prob=norm_sum, self_normalized_log_prob=self_sum,
        log_z_mean=mean, log_z_var=max(z_sq_sum / count - mean * mean, 0.0),
        log_z_abs_mean=z_abs_sum / count, log_z=log_z, num_oov=num_oov, num_words=num_words,
    )


def recenter_log_z(artifact_dir: str | Path, measured: EvaluationResult, text: str | Path) -> float:
    """Re-centering, the one place it is done: move the artifact's constant log_z by the mean of
    log Z(h) - log_z measured on `text` (dev, never test), so that the self-normalized scores
    are unbiased there; the note in the provenance names the text and the shift. Returns the
    new log_z."""
    new_log_z = measured.log_z + measured.log_z_mean
    set_log_z(artifact_dir, new_log_z, note={"text": str(text), "shift": measured.log_z_mean})
    return new_log_z
