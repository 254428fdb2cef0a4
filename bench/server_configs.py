"""Service configurations side by side at one concurrency, with where the CPU time goes.

    python bench/server_configs.py --model-dir runs/librispeech/lm-recentered --data-dir ../shared/data \
        --config "--scoring-workers 1 --torch-threads 2" --config "--telemetry-share 0" --config "" \
        --out docs/bench/server_configs.json

Each --config is a set of extra `rescorer-server` flags ("" = the defaults); KEY=VALUE words
are put in the server's environment instead. For each, one after the other in this run: a
server on 127.0.0.1, a warm-up, then wrk at --concurrency for --seconds with one LibriSpeech
dev_other utterance (30 hypotheses, no reference) per POST /v1/rescore. Reported: utterances/s,
latency, errors, the share of the machine left idle (/proc/stat), the CPU seconds of the
server's busiest threads (/proc/PID/task), and from /metrics the scoring workers' busy time,
the telemetry time and the requests per batch. Loopback only, bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import tempfile
from pathlib import Path

import httpx
from server_load import (  # bench/ is this script's directory
    process_tree,
    rescore_bodies,
    run_load,
    run_wrk,
    start_server,
    write_wrk_script,
)

from rescorer.formats.jsonl import read_jsonl
from rescorer.formats.score_mapping import LIBRISPEECH_ESPNET

METRICS = ("rescorer_scoring_seconds_total", "rescorer_telemetry_seconds_total", "rescorer_batch_requests_sum",
           "rescorer_batch_requests_count")


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds of every thread of the service: the process `pid` and its serving processes."""
    out = {}
    for member in process_tree(pid):
        try:
            tasks = list(Path(f"/proc/{member}/task").iterdir())
        except OSError:  # the process ended meanwhile
            continue
        for task in tasks:
            try:
                stat = (task / "stat").read_text()
            except OSError:  # the thread ended meanwhile
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            out[f"{member}/{task.name}"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def machine_ticks() -> list[int]:
    return [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]


def metric_sums(url: str) -> dict[str, float]:
    sums = dict.fromkeys(METRICS, 0.0)
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        for name in METRICS:
            if line.startswith(name):
                sums[name] += float(line.split()[-1])
    return sums


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--config", action="append", required=True)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    utterances = read_jsonl(args.data_dir / "librispeech-espnet2-hubert-30best" / "nbest" / "dev_other.jsonl.gz",
                            LIBRISPEECH_ESPNET)[:500]
    bodies = rescore_bodies(utterances, refs=False)
    script = Path(tempfile.mkdtemp()) / "rescore.lua"
    write_wrk_script(bodies, script)

    rows = []
    for config in args.config:
        words = config.split()
        env = dict(w.split("=", 1) for w in words if "=" in w and not w.startswith("--"))
        flags = [w for w in words if w not in {f"{k}={v}" for k, v in env.items()}]
        process, url = start_server(args.model_dir, flags, env)
        try:
            asyncio.run(run_load(url, bodies, 8, 40))  # warm-up
            metrics0, threads0, ticks0 = metric_sums(url), thread_cpu_seconds(process.pid), machine_ticks()
            point = run_wrk(url, script, args.concurrency, args.seconds)
            ticks1, threads1, metrics1 = machine_ticks(), thread_cpu_seconds(process.pid), metric_sums(url)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
        ticks = [b - a for a, b in zip(ticks0, ticks1, strict=True)]
        cpu = sorted((threads1[t] - threads0.get(t, 0.0) for t in threads1), reverse=True)
        delta = {k: metrics1[k] - metrics0[k] for k in METRICS}
        row = {"config": config or "(defaults)", **point,
               "machine_idle_share": ticks[3] / sum(ticks),
               "server_thread_cpu_s": [round(c, 2) for c in cpu if c >= 0.05],
               "scoring_busy_workers": delta["rescorer_scoring_seconds_total"] / point["seconds"],
               "telemetry_s": delta["rescorer_telemetry_seconds_total"],
               "requests_per_batch": delta["rescorer_batch_requests_sum"] / max(delta["rescorer_batch_requests_count"], 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"concurrency": args.concurrency, "seconds": args.seconds,
                                        "cpus": os.cpu_count(), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
