"""Padded batches of independent sentences, grouped by length under a token budget.

Each sentence is scored from a zero LSTM state with `<s>` as its first input, exactly as the
rescorer scores a hypothesis: inputs `<s> w_1 .. w_n`, targets `w_1 .. w_n </s>`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from numbers import Integral

import numpy as np
import torch

from rescorer.errors import ConfigError

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


# What one more time step of a batch costs, in padded tokens' worth of work: a batch of `count`
# sentences padded to `width` steps costs about width * (count + STEP_COST). On CPU the LSTM's
# per-step overhead is small, so padding is what matters and near-homogeneous batches win:
# `python bench/batch_partition.py` measures the LibriSpeech 30-best lists (docs/RESULTS.md).
# On an accelerator each step is a kernel launch that costs as much as many tokens, so batches
# should fill the token budget; that value is a choice, not a measurement (no GPU here).
STEP_COST = {"cpu": 4.0}
ACCELERATOR_STEP_COST = 1024.0


def step_cost_for(device: torch.device) -> float:
    return STEP_COST.get(device.type, ACCELERATOR_STEP_COST)


def partition_by_length(lengths: Sequence[int], max_tokens: int, step_cost: float) -> list[list[int]]:
    """Groups of indices (ascending length) minimizing sum of width * (count + step_cost) over groups.

    A group is padded to its longest length (`width`) and holds at most max_tokens // width
    sentences (at least one, so a sentence over the budget is a group of its own). Sorted by
    length, an optimal partition cuts the sorted list into runs; a dynamic programme over the
    distinct lengths finds the best cuts (O(distinct lengths^2)), and a run larger than the budget
    is split into equal pieces.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    widths: list[int] = []
    counts: list[int] = []
    for i in order:
        if widths and widths[-1] == lengths[i]:
            counts[-1] += 1
        else:
            widths.append(lengths[i])
            counts.append(1)
    # best[j]: the least cost of the sentences of the j shortest distinct lengths; cut[j]: where
    # the last run of that optimum starts
    best = [0.0] + [math.inf] * len(widths)
    cut = [0] * (len(widths) + 1)
    for j in range(1, len(widths) + 1):
        width = max(widths[j - 1], 1)
        per_group = max(1, max_tokens // width)
        count = 0
        for i in range(j, 0, -1):
            count += counts[i - 1]
            cost = best[i - 1] + width * (count + step_cost * math.ceil(count / per_group))
            if cost < best[j]:
                best[j], cut[j] = cost, i - 1
    runs = []
    j = len(widths)
    while j > 0:
        runs.append((cut[j], j))
        j = cut[j]
    groups, start = [], 0
    for i, j in reversed(runs):
        count = sum(counts[i:j])
        members = order[start : start + count]
        start += count
        pieces = math.ceil(count / max(1, max_tokens // max(widths[j - 1], 1)))
        size, larger = divmod(count, pieces)  # sizes differ by one at most
        for piece in range(pieces):
            first = piece * size + min(piece, larger)
            groups.append(members[first : first + size + (piece < larger)])
    return groups


def make_sentence_batches(
    sentences: Sequence[Sequence[int]], bos_id: int, eos_id: int, max_tokens: int = 4096,
    step_cost: float = STEP_COST["cpu"],
) -> Iterator[SentenceBatch]:
    """Padded batches of at most `max_tokens` padded tokens, grouped by `partition_by_length`
    (a sentence longer than the budget is a batch of its own). Checked when called, not when
    the first batch is drawn."""
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, Integral) or max_tokens < 1:
        raise ConfigError(f"max_tokens must be a whole number >= 1 (padded tokens per batch); got {max_tokens!r}")
    groups = partition_by_length([len(s) + 1 for s in sentences], max_tokens, step_cost)
    return (_pad(sentences, group, bos_id, eos_id) for group in groups)


def _pad(sentences: Sequence[Sequence[int]], batch: list[int], bos_id: int, eos_id: int) -> SentenceBatch:
    lengths = [len(sentences[i]) + 1 for i in batch]
    width = max(lengths)
    # filled in numpy and handed to torch once: a tensor operation per sentence would cost more
    # than the LSTM step of a short batch
    inputs = np.full((len(batch), width), bos_id, dtype=np.int64)
    targets = np.full((len(batch), width), PAD_TARGET, dtype=np.int64)
    for row, i in enumerate(batch):
        words = sentences[i]
        n = len(words)
        inputs[row, 1 : n + 1] = words
        targets[row, :n] = words
        targets[row, n] = eos_id
    return SentenceBatch(batch, torch.from_numpy(inputs), torch.from_numpy(targets), torch.tensor(lengths))
