"""The teachers' distributions computed once per run and stored, truncated to their top k words.

A distilled student used to pay for its teachers at every step of every epoch: each member's
full softmax (K of them for a mixture of softmaxes) over the vocabulary at every position.
The teachers are frozen and the batch layout is fixed (the truncated-BPTT columns are the
same in every epoch), so their mean distribution Q(.|c) at every training position is the same
in every epoch. `TeacherTopK` computes it once, in one pass over the layout, and stores per
position:

- the k most probable words and ln Q of each (sorted by word id, for lookups),
- ln Q(y|c) of the position's target word, exactly (trust regularization's R(y) needs it
  whether or not y is among the k),
- the mass left outside the k, spread evenly over the other V - k words: ln((1 - sum_k Q) / (V - k)).

Exact when k covers the vocabulary (the rest is then empty). The files are memory-mapped
numpy arrays under the run directory (`teacher-top{k}/`), written to a temporary directory
and renamed when complete, so a stopped run never reuses half a cache; a resumed run reuses a
complete one whose description (teachers' digests, temperature, layout, k) matches, and builds
it again otherwise. With several data-parallel processes each rank stores its own shard.

How the losses read it (`TruncatedTeacher`): the KL term -sum_x Q(x) ln P(x) becomes the KL
between the two distributions coarsened to the k words, the target y and one class for every
other word: -[sum_top Q ln P + Q(y) ln P(y) + Q(rest) ln P(rest)] (y's term where y is not
among the k; P(rest) what the student leaves to the other words). The student is taught the
teachers' order of the k words, their probability of the word that came, and how much mass
the rest holds, never a shape for the rest. Measured against the exact teachers by
experiments/teacher_top_k.py (docs/RESULTS.md): spreading the rest evenly over the other
V - k words taught a flat tail, and dropping y's own term left trust regularization (whose
R(y) is small where Q(y) is) nothing to teach a rare y with. An NCE+KLD
student (`nce-tr`) reads Q at its noise words from the k where they are among them, the even
share of the rest otherwise (noise words are mostly frequent ones, which the k hold).
What the truncation costs is measured in docs/RESULTS.md ("Distillation with a cached teacher").
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from training.batches import BpttBatches
from training.reference import FrozenReference

FORMAT = 1


@dataclass(frozen=True)
class TruncatedTeacher:
    """The teachers' mean distribution at the N positions of one batch, truncated to k words."""

    indices: torch.Tensor  # (N, k) int64, sorted ascending in each row
    log_probs: torch.Tensor  # (N, k) ln Q at those words
    target: torch.Tensor  # (N,) ln Q(y|c), exact
    rest: torch.Tensor  # (N,) ln of each other word's even share of the remaining mass (-inf: none)

    def at(self, words: torch.Tensor) -> torch.Tensor:
        """ln Q(w|c) at `words` (S,) for every position: (N, S)."""
        query = words.unsqueeze(0).expand(self.indices.shape[0], -1).contiguous()  # (N, S)
        position = torch.searchsorted(self.indices, query).clamp_max(self.indices.shape[1] - 1)
        found = self.indices.gather(1, position) == query
        return torch.where(found, self.log_probs.gather(1, position), self.rest.unsqueeze(1))

    def rest_mass(self, vocab_size: int) -> torch.Tensor:
        """1 - sum_k Q(x|c): the teachers' mass outside the stored words, (N,)."""
        return (vocab_size - self.indices.shape[1]) * self.rest.exp()

    def cross_entropy_to(self, student_log_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """-sum over the k stored words, the target y and one class for all other words of
        Q ln P per position: (N, V), (N,) -> (N,)."""
        return self.coarse_cross_entropy(student_log_probs.gather(1, self.indices),
                                         student_log_probs.gather(1, targets.unsqueeze(1)).squeeze(1), targets,
                                         student_log_probs.shape[-1])

    def coarse_cross_entropy(self, student_top: torch.Tensor, student_target: torch.Tensor, targets: torch.Tensor,
                             vocab_size: int) -> torch.Tensor:
        """-[sum_top Q ln P + (Q(y) ln P(y) if y is not among the k) + Q(rest) ln P(rest)], from the
        student's ln P at the k words (N, k) and at y (N,). The target keeps its exact term: with
        trust regularization R(y) is small where Q(y) is, so this term is what teaches a rare y."""
        outside = ~(self.indices == targets.unsqueeze(1)).any(1)  # y not among the stored words
        q_target = torch.where(outside, self.target.exp(), torch.zeros_like(self.target))
        top = (self.log_probs.exp() * student_top).sum(-1) + q_target * student_target
        rest_q = (self.rest_mass(vocab_size) - q_target).clamp_min(0.0)
        p_known = student_top.exp().sum(-1) + torch.where(outside, student_target.exp(), torch.zeros_like(student_target))
        p_rest = torch.log1p(-p_known.clamp(max=1.0 - 1e-6))
        return -(top + torch.where(rest_q > 0, rest_q * p_rest, torch.zeros_like(p_rest)))


def truncate(log_probs: torch.Tensor, targets: torch.Tensor, k: int) -> tuple[torch.Tensor, ...]:
    """The stored form of full teacher log-probabilities (N, V): indices, log-probs, target, rest."""
    vocab = log_probs.shape[1]
    k = min(k, vocab)
    top, indices = log_probs.topk(k, dim=1)
    indices, order = indices.sort(dim=1)
    top = top.gather(1, order)
    left = (-torch.expm1(torch.logsumexp(top, dim=1).clamp_max(0.0))).clamp_min(0.0)  # 1 - sum_k Q
    rest = torch.log(left / (vocab - k)) if vocab > k else torch.full_like(left, -math.inf)
    target = log_probs.gather(1, targets.reshape(-1, 1)).squeeze(1)
    return indices, top, target, rest


class TeacherTopK:
    """The truncated teachers for each batch of a fixed layout, in the order it yields them."""

    def __init__(self, reference: FrozenReference, batches: BpttBatches, k: int, directory: Path,
                 description: dict, device: torch.device | str = "cpu", progress: bool = False) -> None:
        self.batches, self.device = batches, device
        vocab = reference.models[0].config.vocab_size
        self.k = min(k, vocab)
        self.rows = batches.tokens_per_epoch
        self.description = {"format": FORMAT, "k": self.k, "rows": self.rows, "vocab_size": vocab, **description}
        self.directory = directory
        self.built_now = False
        if not self._complete():
            self._build(reference, progress)
            self.built_now = True
        self.indices = np.load(directory / "indices.npy", mmap_mode="r")
        self.log_probs = np.load(directory / "log_probs.npy", mmap_mode="r")
        self.target = np.load(directory / "target.npy", mmap_mode="r")
        self.rest = np.load(directory / "rest.npy", mmap_mode="r")

    @staticmethod
    def cache_bytes(batches: BpttBatches, k: int) -> int:
        return batches.tokens_per_epoch * (k * 8 + 8)

    def _complete(self) -> bool:
        meta = self.directory / "meta.json"
        if not meta.exists():
            return False
        try:
            return json.loads(meta.read_text()) == self.description
        except (OSError, ValueError):
            return False

    @torch.no_grad()
    def _build(self, reference: FrozenReference, progress: bool) -> None:
        partial = self.directory.with_name(self.directory.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        arrays = {
            "indices": np.lib.format.open_memmap(partial / "indices.npy", "w+", np.int32, (self.rows, self.k)),
            "log_probs": np.lib.format.open_memmap(partial / "log_probs.npy", "w+", np.float32, (self.rows, self.k)),
            "target": np.lib.format.open_memmap(partial / "target.npy", "w+", np.float32, (self.rows,)),
            "rest": np.lib.format.open_memmap(partial / "rest.npy", "w+", np.float32, (self.rows,)),
        }
        state, row = None, 0
        for inputs, targets in tqdm(self.batches, desc=f"teachers' top {self.k}", disable=not progress, unit="batch",
                                    leave=False):
            features, state = reference.features(inputs.to(self.device), state)
            parts = truncate(reference.log_probs(features), targets.to(self.device).reshape(-1), self.k)
            n = parts[0].shape[0]
            for name, part in zip(("indices", "log_probs", "target", "rest"), parts, strict=True):
                arrays[name][row:row + n] = part.cpu().numpy()
            row += n
        for array in arrays.values():
            array.flush()
        del arrays
        (partial / "meta.json").write_text(json.dumps(self.description, indent=2) + "\n")
        shutil.rmtree(self.directory, ignore_errors=True)
        partial.rename(self.directory)

    def epoch(self):
        """Yield a TruncatedTeacher per batch of `batches`, in order."""
        row = 0
        for inputs, _ in self.batches:
            n = inputs.numel()
            yield TruncatedTeacher(
                torch.from_numpy(np.asarray(self.indices[row:row + n], dtype=np.int64)).to(self.device),
                torch.from_numpy(np.array(self.log_probs[row:row + n])).to(self.device),
                torch.from_numpy(np.array(self.target[row:row + n])).to(self.device),
                torch.from_numpy(np.array(self.rest[row:row + n])).to(self.device),
            )
            row += n
