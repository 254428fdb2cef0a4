"""Sentence log-probabilities for many hypotheses at once, without a softmax when the model is
self-normalized.

    log p(sentence) = sum over w_1 .. w_n, </s> of log p(w_i | <s> w_1 .. w_{i-1})   (natural log)

Sentences are sorted by length and cut into padded batches under a token budget where padding
would cost more than another batch (`rescorer.sentence_batches`); for a self-normalized artifact only the output rows of the
words being scored are gathered (O(D) per token), for a softmax artifact a full log-softmax
is computed in chunks. Words outside the vocabulary are scored as `<unk>` and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from rescorer.artifact import Artifact
from rescorer.model import token_log_probs
from rescorer.sentence_batches import make_sentence_batches, step_cost_for


@dataclass
class SentenceScores:
    log_probs: np.ndarray  # (n,) float64: natural-log probability of each sentence, </s> included
    num_tokens: np.ndarray  # (n,) int64: tokens (words, or a subword LM's pieces) + 1 (</s>)
    num_oov: np.ndarray  # (n,) int64: words scored as <unk> because they are not in the vocabulary
    token_log_probs: list[np.ndarray] | None = None  # per sentence (words + </s>,), if asked for


def encode_sentences(artifact: Artifact, sentences: Sequence[Sequence[str]]) -> tuple[list[list[int]], np.ndarray]:
    """Token ids of each sentence, and how many of its words are outside the vocabulary (scored
    as the unknown-word symbol; a literal unknown-word symbol is not counted): one pass. A
    subword artifact's tokens are the words' pieces; its count is that of `<unk>` pieces (a
    character its pieces cannot spell)."""
    vocab = artifact.vocab
    unk, unk_symbol = vocab.unk_id, vocab.unk_symbol
    if artifact.tokenizer is not None:
        ids = [vocab.encode(artifact.tokens(words)) for words in sentences]
        return ids, np.fromiter((s.count(unk) for s in ids), dtype=np.int64, count=len(ids))
    ids = [vocab.encode(words) for words in sentences]
    oov = np.fromiter((s.count(unk) - w.count(unk_symbol) if unk in s else 0 for s, w in zip(ids, sentences, strict=True)),
                      dtype=np.int64, count=len(ids))
    return ids, oov


@torch.inference_mode()
def score_sentences(
    artifact: Artifact, sentences: Sequence[Sequence[str]], max_tokens: int = 4096,
    per_token: bool = False, progress: bool = False, step_cost: float | None = None,
) -> SentenceScores:
    """Score word sequences (each a list of words; [] is the empty sentence, scoring `</s>` only).

    `step_cost` (default: the device's, `rescorer.sentence_batches.step_cost_for`) sets how the
    sentences are cut into padded batches; it changes the speed, not the scores.
    """
    ids, oov = encode_sentences(artifact, sentences)
    totals, tokens = _score_padded(artifact, ids, max_tokens, progress, step_cost, per_token)
    lengths = np.array([len(s) + 1 for s in ids], dtype=np.int64)
    return SentenceScores(totals, lengths, oov, tokens if per_token else None)


def _score_padded(artifact: Artifact, ids: list[list[int]], max_tokens: int, progress: bool = False,
                  step_cost: float | None = None, per_token: bool = True) -> tuple[np.ndarray, list[np.ndarray]]:
    model, vocab = artifact.model, artifact.vocab
    if model.training:  # eval() walks every submodule: not on every call
        model.eval()
    device = model.device
    totals = np.zeros(len(ids), dtype=np.float64)
    token_scores: list[np.ndarray] = [np.empty(0)] * len(ids)
    # no progress bar object at all unless asked: a service scores small batches many times a second
    bar = tqdm(total=len(ids), desc="scoring", unit="sent", leave=False) if progress else None
    for batch in make_sentence_batches(ids, vocab.bos_id, vocab.eos_id, max_tokens,
                                       step_cost_for(device) if step_cost is None else step_cost):
        features, _ = model.features(batch.inputs.to(device))  # (B, T, D)
        mask = batch.mask.to(device)  # (B, T)
        scores = torch.zeros(mask.shape, dtype=torch.float64, device=device)  # (B, T)
        scores[mask] = token_log_probs(model, features[mask], batch.targets.to(device)[mask]).double()
        totals[batch.indices] = scores.sum(1).cpu().numpy()
        if per_token:
            scores_cpu = scores.cpu().numpy()
            for row, index in enumerate(batch.indices):
                token_scores[index] = scores_cpu[row, : int(batch.lengths[row])]
        if bar is not None:
            bar.update(len(batch.indices))
    if bar is not None:
        bar.close()
    return totals, token_scores
