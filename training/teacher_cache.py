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
complete one whose description (teachers' digests, temperature, layout, the training text's ids,
k) matches and whose arrays read back whole (a file cut short, removed or replaced since is not
read), and builds it again otherwise. With several data-parallel processes each rank
stores its own shard.

Runs that distil several students from the same teachers over the same text (paper 2's tables:
TR, KL, interpolation, nce-tr, ...) can share one store (`--teacher-store DIR`): each
description gets its own directory, named by the digest of the description, and the first run
to need it builds it under an exclusive file lock while the others wait, then all read it.

How the losses read it (`TruncatedTeacher`): Q is exact at the k words and at the target y
(whose probability is stored), and the mass left, r, is spread over the other words like the
training text's unigram distribution u: Q(x) = r u(x) / u(rest). Then the KL term is
-[sum_K Q ln P + r / u(rest) (sum_x u ln P - sum_K u ln P)], where sum_x u(x) ln P(x) is one
product per position. Measured against the exact teachers by experiments/teacher_top_k.py
(docs/RESULTS.md): spreading r evenly over the other V - k words taught a flat tail, a single
class for the rest taught the tail nothing (and, with trust regularization, whose R(y) is small
where Q(y) is, nothing about a rare y either). An NCE+KLD
student (`nce-tr`) reads Q at its noise words from the k where they are among them, the exact
Q(y) where a noise word is the target (as nce_kld_loss removes it), and otherwise the word's
share of the mass outside K as the KL term spreads it (`TruncatedTeacher.at`). The prior u is
the add-one unigram of the targets, so `<s>`, never a target, gets none of the tail (format 2;
format 1 counted it at its full frequency).
What the truncation costs is measured in docs/RESULTS.md ("Distillation with a cached teacher").
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from rescorer.atomic import make_directory
from rescorer.errors import OutputError
from training.batches import BpttBatches
from training.corpus import unigram_counts
from training.reference import FrozenReference

FORMAT = 2  # 2: the tail prior without <s> (stores of format 1 are built again)
TAIL_FLOOR = 1e-30  # the student's P(rest) below this (all its mass on K) counts as this: a finite loss
ARRAYS = {"indices": np.dtype(np.int32), "log_probs": np.dtype(np.float32),  # (rows, k) each
          "target": np.dtype(np.float32), "rest": np.dtype(np.float32)}  # (rows,) each


def corpus_digest(ids: np.ndarray) -> str:
    """sha256 of the training text's token ids: which positions a store describes."""
    return hashlib.sha256(np.ascontiguousarray(ids, dtype=np.int64).tobytes()).hexdigest()


def shared_store_directory(root: Path, k: int, description: dict) -> Path:
    """The directory under a shared --teacher-store for one description (and k)."""
    digest = hashlib.sha256(json.dumps({"k": k, **description}, sort_keys=True).encode()).hexdigest()
    return root / f"teacher-top{k}-{digest[:16]}"


@dataclass(frozen=True)
class TruncatedTeacher:
    """The teachers' mean distribution at the N positions of one batch, truncated to k words;
    the mass outside them shaped like `prior` (the training text's unigram distribution, or
    uniform where none is given)."""

    indices: torch.Tensor  # (N, k) int64, sorted ascending in each row
    log_probs: torch.Tensor  # (N, k) ln Q at those words
    target: torch.Tensor  # (N,) ln Q(y|c), exact
    rest: torch.Tensor  # (N,) ln of each other word's even share of the remaining mass (-inf: none)
    prior: torch.Tensor | None = None  # (V,) probabilities the remaining mass is spread by
    # None: every column is an exact top word. j: the first j columns are the top j words (ln Q),
    # the others words drawn from the teachers' tail, each with ln(r / samples) (a store with samples)
    exact_columns: int | None = None
    # how cross_entropy_from spreads the mass outside K: like `prior` ("prior") or like the
    # student's own distribution there ("student"); `at` (nce-tr's noise words) always uses the prior
    tail: str = "prior"

    @property
    def exact(self) -> int:
        return self.indices.shape[1] if self.exact_columns is None else self.exact_columns

    @property
    def sampled(self) -> bool:
        return self.exact < self.indices.shape[1]

    def rest_mass(self, vocab_size: int) -> torch.Tensor:
        """1 - sum_top Q(x|c): the teachers' mass outside the exact top words, (N,)."""
        return (vocab_size - self.exact) * self.rest.exp()

    def prior_over(self, vocab_size: int, like: torch.Tensor) -> torch.Tensor:
        if self.prior is not None:
            return self.prior.to(like.dtype)
        return torch.full((vocab_size,), 1.0 / vocab_size, dtype=like.dtype, device=like.device)

    def at(self, words: torch.Tensor, vocab_size: int, targets: torch.Tensor) -> torch.Tensor:
        """ln Q(w|c) at `words` (S,) for every position, (N, S): the stored value where w is among
        the k, the exact ln Q(y|c) where w is the position's target y, else w's share of the mass
        outside K (the k words and y, as `cross_entropy_from` counts it): (r - Q(y)) u(w) / u(rest),
        Q(y) and u(y) taken out only where y is outside the k. So a noise word equal to y reads
        the same Q(y) that nce_kld_loss removes it with."""
        top, top_log_probs = self.indices, self.log_probs
        if self.sampled:  # the exact block only (searchsorted wants it contiguous)
            top, top_log_probs = top[:, :self.exact].contiguous(), top_log_probs[:, :self.exact]
        query = words.unsqueeze(0).expand(self.indices.shape[0], -1).contiguous()  # (N, S)
        position = torch.searchsorted(top, query).clamp_max(top.shape[1] - 1)
        found = top.gather(1, position) == query
        prior = self.prior_over(vocab_size, self.log_probs)
        outside = ~(top == targets.unsqueeze(1)).any(1)  # (N,) y not among the exact words
        zero = torch.zeros_like(self.target)
        q_target = torch.where(outside, self.target.exp(), zero)
        u_target = torch.where(outside, prior[targets], zero)
        rest_q = (self.rest_mass(vocab_size) - q_target).clamp_min(1e-30)
        rest_u = (1.0 - prior[top].sum(-1) - u_target).clamp_min(1e-6)  # (N,)
        share = torch.log(rest_q / rest_u).unsqueeze(1) + torch.log(prior[words]).unsqueeze(0)
        is_target = query == targets.unsqueeze(1)
        value = torch.where(is_target, self.target.unsqueeze(1).expand_as(share), share)
        return torch.where(found, top_log_probs.gather(1, position), value)

    def cross_entropy_to(self, student_log_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """-sum_x Q(x|c) ln P(x|c) per position with the stored teachers: (N, V), (N,) -> (N,)."""
        vocab = student_log_probs.shape[-1]
        return self.cross_entropy_from(student_log_probs.gather(1, self.indices),
                                       student_log_probs.gather(1, targets.unsqueeze(1)).squeeze(1),
                                       student_log_probs @ self.prior_over(vocab, student_log_probs), targets, vocab)

    def cross_entropy_from(self, student_top: torch.Tensor, student_target: torch.Tensor,
                           student_prior_sum: torch.Tensor, targets: torch.Tensor, vocab_size: int) -> torch.Tensor:
        """-[sum_K Q ln P + r / u(rest) (sum_x u ln P - sum_K u ln P)] from the student's ln P at the
        k words (N, k), at y (N,), and sum_x u(x) ln P(x) (N,): K is the k words and y (the
        target's exact term), r the teachers' mass outside K, u(rest) the prior's.
        A store with samples: -[sum_top Q ln P + (r / m) sum_j ln P(x_j)], the x_j drawn from
        the teachers' tail (unbiased for the tail's term; the target is not counted apart).
        tail "student": -[sum_K Q ln P + r ln P(rest)], P(rest) = 1 - sum_K P the student's mass
        outside K. That is -sum_x Q'(x) ln P(x) with Q'(x) = r P(x) / P(rest) on the rest, held
        fixed, less r H(P(.)/P(rest)), which has no gradient: the gradients are equal (tested)."""
        if self.sampled:
            return -(self.log_probs.exp() * student_top).sum(-1)
        if self.tail == "student":
            return self._cross_entropy_with_student_tail(student_top, student_target, targets, vocab_size)
        prior = self.prior_over(vocab_size, student_top)
        outside = ~(self.indices == targets.unsqueeze(1)).any(1)  # y not among the stored words
        zero = torch.zeros_like(self.target)
        q_target = torch.where(outside, self.target.exp(), zero)
        u_top, u_target = prior[self.indices], torch.where(outside, prior[targets], zero)
        known = (self.log_probs.exp() * student_top).sum(-1) + q_target * student_target
        rest_q = (self.rest_mass(vocab_size) - q_target).clamp_min(0.0)
        rest_u = (1.0 - u_top.sum(-1) - u_target).clamp_min(1e-6)
        tail = student_prior_sum - (u_top * student_top).sum(-1) - u_target * student_target
        return -(known + rest_q / rest_u * tail)

    def _cross_entropy_with_student_tail(self, student_top: torch.Tensor, student_target: torch.Tensor,
                                         targets: torch.Tensor, vocab_size: int) -> torch.Tensor:
        outside = ~(self.indices == targets.unsqueeze(1)).any(1)  # y not among the stored words
        q_target = torch.where(outside, self.target.exp(), torch.zeros_like(self.target))
        known = (self.log_probs.exp() * student_top).sum(-1) + q_target * student_target
        rest_q = (self.rest_mass(vocab_size) - q_target).clamp_min(0.0)
        # ln P(K) over the k words and (where outside them) y, then ln P(rest) = ln(1 - P(K))
        target_column = torch.where(outside, student_target, torch.full_like(student_target, -math.inf))
        in_k = torch.logsumexp(torch.cat([student_top, target_column.unsqueeze(1)], 1), dim=1).clamp_max(0.0)
        rest_log = torch.log((-torch.expm1(in_k)).clamp_min(TAIL_FLOOR))
        return -(known + rest_q * rest_log)


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


def truncate_and_sample(log_probs: torch.Tensor, targets: torch.Tensor, k: int, samples: int,
                        generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """The stored form with samples: the top k words exactly, then `samples` words drawn with
    replacement from the teachers' distribution outside them, each weighted r / samples (r the
    mass outside the top k): ln of the weights in the log_probs columns."""
    indices, top, target, rest = truncate(log_probs, targets, k)
    k = indices.shape[1]
    tail = log_probs.scatter(1, indices, -math.inf).exp()  # (N, V) Q outside the top k
    left = tail.sum(1)
    empty = left <= 0  # all the mass in the top k: draw anything, at weight 0
    tail[empty] = 1.0
    drawn = torch.multinomial(tail, samples, replacement=True, generator=generator).sort(dim=1).values
    weights = torch.log(left.clamp_min(0.0) / samples).unsqueeze(1).expand(-1, samples)
    weights = torch.where(empty.unsqueeze(1), torch.full_like(weights, -math.inf), weights)
    return torch.cat([indices, drawn], 1), torch.cat([top, weights.to(top.dtype)], 1), target, rest


class TeacherTopK:
    """The truncated teachers for each batch of a fixed layout, in the order it yields them."""

    def __init__(self, reference: FrozenReference, batches: BpttBatches, k: int, directory: Path,
                 description: dict, bos_id: int, device: torch.device | str = "cpu", progress: bool = False,
                 samples: int = 0, sample_seed: int = 1, tail: str = "prior") -> None:
        self.batches, self.device = batches, device
        self.tail = tail  # how the losses spread the mass outside the top k (TruncatedTeacher.tail)
        vocab = reference.models[0].config.vocab_size
        self.top = min(k, vocab)
        self.samples = samples if self.top < vocab else 0  # nothing outside a whole vocabulary to draw
        self.sample_seed = sample_seed
        self.k = self.top + self.samples  # columns per position
        self.rows = batches.tokens_per_epoch
        self.description = {"format": FORMAT, "k": self.top, "rows": self.rows, "vocab_size": vocab, **description}
        if self.samples:
            self.description |= {"samples": self.samples, "sample_seed": sample_seed}
        self.directory = directory
        self.built_now = False
        make_directory(directory.parent)  # OutputError, not a traceback, where none can be made
        lock_path = directory.with_name(directory.name + ".lock")
        try:
            lock = open(lock_path, "a")  # noqa: SIM115 - closed by the with below
        except OSError as e:
            raise OutputError(f"{lock_path}: cannot create the store's lock file ({e.strerror or e})") from None
        # One builder at a time: a run sharing the store waits here for the one building it.
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            arrays = self._complete()
            if arrays is None:
                self._build(reference, progress)
                self.built_now = True
                arrays = self._complete()
            if arrays is None:
                raise OutputError(f"{directory}: the teachers' top {self.k} was written but does not read back;"
                                  " check the disk, or put the store elsewhere (--teacher-store)")
        # add-one unigram of the targets: <s> is never one (the noise distribution leaves it out too)
        counts = unigram_counts(np.asarray(batches.ids, dtype=np.int64), vocab, bos_id).astype(np.float64) + 1.0
        counts[bos_id] = 0.0
        self.prior = torch.from_numpy(counts / counts.sum()).float().to(device)
        self.indices, self.log_probs, self.target, self.rest = (arrays[name] for name in ARRAYS)

    @staticmethod
    def cache_bytes(batches: BpttBatches, k: int) -> int:
        """k: columns per position (top words and samples)."""
        return TeacherTopK.bytes_for(batches.tokens_per_epoch, k)

    @staticmethod
    def bytes_for(rows: int, k: int) -> int:
        """A store's size: per position an int32 index and a float32 ln Q per column, and the
        target's ln Q and the rest's share."""
        return rows * (k * 8 + 8)

    def _shape(self, name: str) -> tuple[int, ...]:
        return (self.rows, self.k) if name in ("indices", "log_probs") else (self.rows,)

    def _complete(self) -> dict[str, np.ndarray] | None:
        """The stored arrays, memory-mapped, when the directory holds this description with every
        array whole (the shape and type it was written with); None when it must be built (again):
        missing, another description, or a file cut short or replaced since."""
        try:
            if json.loads((self.directory / "meta.json").read_text()) != self.description:
                return None
            arrays = {name: np.load(self.directory / f"{name}.npy", mmap_mode="r") for name in ARRAYS}
        except (OSError, ValueError, EOFError):
            return None
        whole = all((array.shape, array.dtype) == (self._shape(name), ARRAYS[name]) for name, array in arrays.items())
        return arrays if whole else None

    @torch.no_grad()
    def _build(self, reference: FrozenReference, progress: bool) -> None:
        partial = self.directory.with_name(self.directory.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        needed, free = self.cache_bytes(self.batches, self.k), shutil.disk_usage(self.directory.parent).free
        if needed > free:  # refused before the teachers' pass, not failed at its end
            raise OutputError(f"{self.directory}: the teachers' top {self.k} at {self.rows} positions need"
                              f" {needed / 2**30:.1f} GiB and {free / 2**30:.1f} GiB are free there; free space,"
                              " choose a smaller --teacher-top-k, or put the store elsewhere (--teacher-store)")
        partial.mkdir(parents=True)
        arrays = {name: np.lib.format.open_memmap(partial / f"{name}.npy", "w+", dtype, self._shape(name))
                  for name, dtype in ARRAYS.items()}
        state, row = None, 0
        generator = torch.Generator(device=self.device).manual_seed(self.sample_seed)
        for inputs, targets in tqdm(self.batches, desc=f"teachers' top {self.top}", disable=not progress,
                                    unit="batch", leave=False):
            features, state = reference.features(inputs.to(self.device), state)
            log_probs, flat = reference.log_probs(features), targets.to(self.device).reshape(-1)
            parts = truncate_and_sample(log_probs, flat, self.top, self.samples, generator) if self.samples \
                else truncate(log_probs, flat, self.top)
            n = parts[0].shape[0]
            for name, part in zip(ARRAYS, parts, strict=True):
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
                self.prior, self.top if self.samples else None, self.tail,
            )
            row += n
