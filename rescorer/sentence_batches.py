"""Padded batches of independent sentences, grouped by length under a token budget.

Each sentence is scored from a zero LSTM state with `<s>` as its first input, exactly as the
rescorer scores a hypothesis: inputs `<s> w_1 .. w_n`, targets `w_1 .. w_n </s>`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

PAD_TARGET = -1  # marks padded target positions; never a word id


@dataclass(frozen=True)
class SentenceBatch:
    indices: list[int]  # positions of these sentences in the caller's list
    inputs: torch.Tensor  # (B, T) int64, padded with <s>'s id (any id would do)
    targets: torch.Tensor  # (B, T) int64, PAD_TARGET where padded
    lengths: torch.Tensor  # (B,) number of predicted tokens per sentence (words + </s>)

    @property
    def mask(self) -> torch.Tensor:
        return self.targets != PAD_TARGET  # (B, T)


def make_sentence_batches(
    sentences: Sequence[Sequence[int]], bos_id: int, eos_id: int, max_tokens: int = 4096
) -> Iterator[SentenceBatch]:
    """Sort by length, then fill each batch until its padded size would exceed `max_tokens`.

    A single sentence longer than the budget gets a batch of its own.
    """
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    batch: list[int] = []
    for i in order:
        longest = len(sentences[i]) + 1  # sorted ascending, so this one is the longest so far
        if batch and longest * (len(batch) + 1) > max_tokens:
            yield _pad(sentences, batch, bos_id, eos_id)
            batch = []
        batch.append(i)
    if batch:
        yield _pad(sentences, batch, bos_id, eos_id)


def _pad(sentences: Sequence[Sequence[int]], batch: list[int], bos_id: int, eos_id: int) -> SentenceBatch:
    lengths = [len(sentences[i]) + 1 for i in batch]
    width = max(lengths)
    inputs = torch.full((len(batch), width), bos_id, dtype=torch.long)
    targets = torch.full((len(batch), width), PAD_TARGET, dtype=torch.long)
    for row, i in enumerate(batch):
        words = torch.as_tensor(np.asarray(sentences[i], dtype=np.int64))
        n = len(words)
        inputs[row, 1 : n + 1] = words
        targets[row, :n] = words
        targets[row, n] = eos_id
    return SentenceBatch(batch, inputs, targets, torch.tensor(lengths))
