"""Dynamic batching: hypotheses of concurrent requests scored together in one device call.

Requests put work items (a model name and its sentences; an utterance's hypotheses stay in
one item) on a bounded queue. A worker thread takes the oldest item and keeps adding
items for the same model until the batch holds `batch_tokens` tokens, or the oldest item
has waited `max_delay_ms`, or `max_batch_requests` items are in; it scores the batch in one
`score_sentences` call (inference mode, off the event loop) and hands each item its share.
If a batch fails, its items are retried one by one, so a bad item fails alone.

`workers` threads do this side by side, each scoring its own batch. On CPU the service runs
one per core with one torch thread each (server/app.py): on the 2-core test machine one
worker with 2 intra-op threads left the machine 31 % idle under load, two single-threaded
workers 14 % (bench/server_configs.py; docs/RESULTS.md, "Service under load").

Telemetry: after a batch, the exact log Z(h) of a self-normalized model is measured at every
position of one sentence drawn uniformly from the batch (so every scored position is equally
likely to be measured), but only while the time spent on it stays within `telemetry_share` of
the time spent scoring: measuring takes every output row at every position where scoring
takes one (33k rows for the served LibriSpeech model), so a sample *rate* would tax
throughput by a vocabulary-dependent amount, while a time share bounds the tax by construction.

Overload: when the queued tokens would exceed `queue_tokens`, `submit` raises Overloaded
(the app answers 503 with Retry-After). Deadline: an item not answered within the request
timeout raises DeadlineExceeded (504) and is skipped if it has not started.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from rescorer.self_normalization import log_z_of_sentence
from rescorer.sentence_scoring import SentenceScores, score_sentences
from server.metrics import Metrics
from server.registry import Registry

log = logging.getLogger("rescorer.server")


class Overloaded(RuntimeError):
    pass


class DeadlineExceeded(TimeoutError):
    pass


@dataclass
class WorkItem:
    model: str
    sentences: list[list[str]]
    tokens: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    per_token: bool = False  # the caller wants each token's log-probability too
    enqueued: float = field(default_factory=time.monotonic)
    cancelled: bool = False


class DynamicBatcher:
    def __init__(self, registry: Registry, metrics: Metrics, batch_tokens: int, max_delay_ms: float,
                 queue_tokens: int, max_batch_requests: int | None = None, telemetry_share: float = 0.0,
                 workers: int = 1) -> None:
        self.registry, self.metrics = registry, metrics
        self.batch_tokens, self.max_delay = batch_tokens, max_delay_ms / 1000.0
        self.queue_limit, self.max_batch_requests = queue_tokens, max_batch_requests
        self.telemetry_share = telemetry_share
        self._scoring_s = self._telemetry_s = 0.0  # worker-thread time spent on each, for the share
        self._measuring = False  # a worker is measuring log Z
        self._stats_lock = threading.Lock()  # the three above, the log Z running mean and the sampler
        self._random = random.Random(0)  # which sentence a telemetry sample re-scores
        self._queue: deque[WorkItem] = deque()
        self._queued_tokens = 0
        self._condition = threading.Condition()
        self._stopping = False
        self._log_z_stats: dict[str, list[float]] = {}
        self._threads = [threading.Thread(target=self._run, name=f"rescorer-scorer-{i}", daemon=True)
                         for i in range(max(1, workers))]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then end the workers."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def requests_per_batch(self, model: str) -> int | None:
        """At most this many requests in one call for `model`: the operator's --max-batch-requests,
        else 1 where batching across requests does not pay for it on this device (measured when
        it loaded, server/batching_choice.py), else no limit but the token budget."""
        if self.max_batch_requests is not None:
            return self.max_batch_requests
        choice = self.registry.batching.get(model)
        return 1 if choice is not None and not choice.batch_across_requests else None

    async def submit(self, model: str, sentences: list[list[str]], timeout: float,
                     per_token: bool = False) -> SentenceScores:
        tokens = sum(len(s) + 1 for s in sentences)
        loop = asyncio.get_running_loop()
        item = WorkItem(model, sentences, tokens, loop, loop.create_future(), per_token)
        with self._condition:
            if self._stopping:
                raise Overloaded("the service is shutting down")
            if self._queue and self._queued_tokens + tokens > self.queue_limit:
                raise Overloaded(f"{self._queued_tokens} tokens are queued (limit {self.queue_limit})")
            self._queue.append(item)
            self._queued_tokens += tokens
            self._update_queue_metrics()
            self._condition.notify()
        try:
            async with asyncio.timeout(timeout):  # the item's own future is never cancelled: shielded
                return await asyncio.shield(item.future)
        except TimeoutError:
            item.cancelled = True
            raise DeadlineExceeded(f"not answered within {timeout:g} s") from None

    def _update_queue_metrics(self) -> None:
        self.metrics.queue_tokens.set(self._queued_tokens)
        self.metrics.queue_requests.set(len(self._queue))

    def _take_batch(self) -> list[WorkItem] | None:
        with self._condition:
            while True:  # wait for an item, then for company until the budget or the delay is reached
                if not self._queue:
                    if self._stopping:
                        return None
                    self._condition.wait()
                    continue
                first = self._queue[0]  # read again on every pass: another worker may have taken it
                limit = self.requests_per_batch(first.model)
                same = [i for i in self._queue if i.model == first.model]
                tokens = sum(i.tokens for i in same)
                full = tokens >= self.batch_tokens or (limit is not None and len(same) >= limit)
                remaining = self.max_delay - (time.monotonic() - first.enqueued)
                if full or remaining <= 0 or self._stopping:
                    break
                self._condition.wait(remaining)
            batch, tokens = [], 0
            for item in list(self._queue):
                if item.model != first.model:
                    continue
                if batch and (tokens + item.tokens > self.batch_tokens or (limit is not None and len(batch) >= limit)):
                    break
                batch.append(item)
                tokens += item.tokens
            for item in batch:
                self._queue.remove(item)
                self._queued_tokens -= item.tokens
            self._update_queue_metrics()
            if self._queue:
                self._condition.notify()  # a waiting worker may start on what is left
            return batch

    def _run(self) -> None:
        while (batch := self._take_batch()) is not None:
            live = [i for i in batch if not i.cancelled and not i.future.done()]
            try:
                if live:
                    self._score(live)
            except Exception:  # the worker must outlive any batch
                log.exception("a batch failed outside scoring")
                for item in live:
                    self._resolve(item, error=RuntimeError("scoring failed"))

    def _score(self, batch: list[WorkItem]) -> None:
        name = batch[0].model
        artifact = self.registry.models[name]
        sentences = [s for item in batch for s in item.sentences]
        started = time.perf_counter()
        try:
            per_token = any(item.per_token for item in batch)
            scores = score_sentences(artifact, sentences, max_tokens=max(self.batch_tokens, 1), per_token=per_token)
        except Exception:
            if len(batch) == 1:
                log.exception("scoring failed for one request")
                self._resolve(batch[0], error=RuntimeError("scoring failed"))
                return
            for item in batch:
                self._score([item])
            return
        elapsed = time.perf_counter() - started
        with self._stats_lock:
            self._scoring_s += elapsed
        self.metrics.scoring_seconds.labels(name).inc(elapsed)
        self.metrics.batch_requests.observe(len(batch))
        self.metrics.batch_hypotheses.observe(len(sentences))
        self.metrics.batch_tokens.observe(int(scores.num_tokens.sum()))
        self.metrics.tokens_scored.labels(name).inc(int(scores.num_tokens.sum()))
        start = 0
        for item in batch:
            stop = start + len(item.sentences)
            part = SentenceScores(scores.log_probs[start:stop], scores.num_tokens[start:stop],
                                  scores.num_oov[start:stop],
                                  scores.token_log_probs[start:stop] if item.per_token else None)
            self._resolve(item, result=part)
            start = stop
        try:
            self._telemetry(name, artifact, sentences)
        except Exception:
            log.exception("log Z telemetry failed")

    def _resolve(self, item: WorkItem, result: SentenceScores | None = None, error: Exception | None = None) -> None:
        def settle() -> None:
            if item.future.done():
                return
            if error is not None:
                item.future.set_exception(error)
            else:
                item.future.set_result(result)

        item.loop.call_soon_threadsafe(settle)

    def _telemetry(self, name: str, artifact, sentences: list[list[str]]) -> None:
        """Exact log Z(h) at the positions of one sentence of the batch, within the time share."""
        if self.telemetry_share <= 0 or not artifact.model.is_self_normalized:
            return
        with self._stats_lock:  # one measurement at a time, so the share overshoots by one at most
            if self._measuring or self._telemetry_s > self.telemetry_share * self._scoring_s:
                return
            self._measuring = True
            words = self._random.choice(sentences)
        started = time.perf_counter()
        try:
            values = log_z_of_sentence(artifact, words)
        finally:
            elapsed = time.perf_counter() - started
            with self._stats_lock:
                self._telemetry_s += elapsed
                self._measuring = False
        self.metrics.telemetry_seconds.labels(name).inc(elapsed)
        histogram = self.metrics.log_z.labels(name)
        for v in values:
            histogram.observe(float(v))
        with self._stats_lock:
            stats = self._log_z_stats.setdefault(name, [0.0, 0.0])
            stats[0] += float(np.sum(values))
            stats[1] += len(values)
            self.metrics.log_z_mean.labels(name).set(stats[0] / stats[1])
