"""Prometheus metrics of one app instance (its own registry, so tests can run several apps).

In a service of several processes (server/processes.py) the values live in Prometheus's
multi-process files and /metrics merges them: counters and histograms summed over every process
that ran, the queue gauges summed over the live ones."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
SIZE_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536)


@dataclass
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    queue_tokens: Gauge
    queue_requests: Gauge
    batch_hypotheses: Histogram
    batch_tokens: Histogram
    batch_requests: Histogram
    tokens_scored: Counter
    scoring_seconds: Counter
    telemetry_seconds: Counter
    log_z: Histogram
    log_z_mean: Gauge


def create_metrics() -> Metrics:
    r = CollectorRegistry()
    return Metrics(
        registry=r,
        requests=Counter("rescorer_requests", "HTTP requests by route and status", ["route", "status"], registry=r),
        latency=Histogram("rescorer_request_latency_seconds", "request latency by route", ["route"],
                          buckets=LATENCY_BUCKETS, registry=r),
        queue_tokens=Gauge("rescorer_queue_tokens", "tokens waiting to be scored", registry=r,
                           multiprocess_mode="livesum"),
        queue_requests=Gauge("rescorer_queue_requests", "requests waiting to be scored", registry=r,
                             multiprocess_mode="livesum"),
        batch_hypotheses=Histogram("rescorer_batch_hypotheses", "hypotheses per device call", buckets=SIZE_BUCKETS, registry=r),
        batch_tokens=Histogram("rescorer_batch_tokens", "tokens per device call", buckets=SIZE_BUCKETS, registry=r),
        batch_requests=Histogram("rescorer_batch_requests", "requests per device call", buckets=SIZE_BUCKETS, registry=r),
        tokens_scored=Counter("rescorer_tokens_scored", "tokens scored (rate() gives tokens/s)", ["model"], registry=r),
        scoring_seconds=Counter("rescorer_scoring_seconds", "time the batch worker spent scoring (rate() gives"
                                " its busy share)", ["model"], registry=r),
        telemetry_seconds=Counter("rescorer_telemetry_seconds", "time spent measuring the exact log Z(h)",
                                  ["model"], registry=r),
        log_z=Histogram("rescorer_log_z", "exact log Z(h) on sampled live positions (0 = perfectly normalized)",
                        ["model"], buckets=(-2, -1, -0.5, -0.25, -0.1, 0, 0.1, 0.25, 0.5, 1, 2), registry=r),
        log_z_mean=Gauge("rescorer_log_z_mean", "running mean of the sampled log Z(h) (with several processes:"
                         " the latest process's; rescorer_log_z_sum / _count is the pooled mean)", ["model"],
                         registry=r, multiprocess_mode="mostrecent"),
    )
