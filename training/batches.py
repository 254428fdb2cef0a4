"""Truncated-BPTT batches over an id stream: (batch x bptt) windows, state carried across them.

The stream is cut into `batch_size` equal columns; window i of every column follows window
i-1 of the same column, so the LSTM state at the end of one batch is the right start for the
next. With several data-parallel processes the stream is first cut into `world_size` equal
shards, so every process runs the same number of steps.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from rescorer.errors import ConfigError


def ordered_stream(corpora: list[np.ndarray], columns: int, names: list[str] | None = None) -> np.ndarray:
    """One id stream for several corpora read in order: cut into `columns` equal columns (as
    BpttBatches cuts it, with `columns` = batch size x data-parallel processes), every column
    holds its share of the first corpus, then its share of the second, and so on, so every
    column reads the corpora in the given order and the last steps of an epoch see only the last
    corpus. Each corpus gives len // columns tokens to each column (the remainder, fewer than
    `columns` tokens, is left out). One corpus is returned as it is: the batches of a
    single-corpus run do not change."""
    if len(corpora) == 1:
        return corpora[0]
    lengths = [len(c) // columns for c in corpora]
    for i, (corpus, length) in enumerate(zip(corpora, lengths, strict=True)):
        if length < 1:
            name = names[i] if names else f"training corpus {i + 1}"
            raise ConfigError(f"{name} ({len(corpus)} tokens) is too small to give each of"
                              f" the {columns} batch columns a token; lower --batch-size")
    pieces = [corpus[b * length:(b + 1) * length] for b in range(columns)
              for corpus, length in zip(corpora, lengths, strict=True)]
    # one more token: the target of the last input (the first corpus's first token, a sentence start)
    return np.concatenate([*pieces, corpora[0][:1]]).astype(corpora[0].dtype, copy=False)


class BpttBatches:
    def __init__(
        self, ids: np.ndarray, batch_size: int, bptt: int, rank: int = 0, world_size: int = 1
    ) -> None:
        if batch_size < 1 or bptt < 1:
            raise ConfigError(f"batch_size and bptt must be positive, got {batch_size}, {bptt}")
        shard = (len(ids) - 1) // world_size  # usable positions: every input needs a target
        self.column_length = shard // batch_size
        if self.column_length < 1:
            raise ConfigError(
                f"corpus of {len(ids)} tokens is too small for batch size {batch_size}"
                f" x {world_size} processes: each column needs at least 2 tokens"
            )
        self.ids = ids
        self.bptt = bptt
        self.rank, self.world_size = rank, world_size
        self.starts = rank * shard + np.arange(batch_size) * self.column_length  # (B,)

    def __len__(self) -> int:
        return -(-self.column_length // self.bptt)

    @property
    def tokens_per_epoch(self) -> int:
        return self.column_length * len(self.starts)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (inputs, targets), each (B, T) int64; the last window may be shorter."""
        for offset in range(0, self.column_length, self.bptt):
            length = min(self.bptt, self.column_length - offset)
            index = self.starts[:, None] + offset + np.arange(length + 1)  # (B, T+1)
            window = torch.from_numpy(np.asarray(self.ids[index], dtype=np.int64))
            yield window[:, :-1], window[:, 1:]
