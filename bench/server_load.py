"""Load test of the rescoring service on loopback with the real LibriSpeech 30-best lists.

    python bench/server_load.py --model-dir runs/librispeech/lm-recentered --data-dir ../shared/data \
        --out docs/bench/server_load.json

Starts `rescorer-server` (its defaults: one process per core on CPU) twice on 127.0.0.1,
batching across requests forced on (--max-batch-requests 100000) and off (1), and sends one utterance (30 hypotheses; with --refs also its
reference) per POST /v1/rescore at
concurrency 1, 8, 32 and 64 (a bounded number of requests per point, or with `--client wrk`
a bounded duration: wrk, Debian's package, costs the shared CPU far less than the Python
client, so it measures the service rather than the load generator). Reports utterances/s,
hypotheses/s, p50/p95/p99 latency and errors; then a soak of --soak-requests requests
sampling the server's resident memory; and the library's own throughput on the same lists
(score_sentences in-process): batched and one utterance per call in one thread, as the
`rescorer` CLI runs, and one utterance per call on one single-threaded worker per core, as
the service scores on CPU; for the service/library ratios and two ceilings on what batching
can gain on this device. Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import torch

from rescorer.artifact import load_artifact
from rescorer.formats.jsonl import read_jsonl, utterance_to_record
from rescorer.formats.score_mapping import LIBRISPEECH_ESPNET
from rescorer.sentence_scoring import score_sentences
from server.app import available_cores
from server.processes import process_tree
from server.readiness import wait_until_ready


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory_mb(pid: int) -> dict:
    """Resident memory of the process tree under `pid`: RSS per process and summed (which counts
    shared pages once per process), and PSS summed (shared pages divided among their sharers:
    what the tree costs the machine)."""
    per_process = []
    for member in process_tree(pid):
        try:
            fields = {line.split(":")[0]: int(line.split()[1]) / 1024
                      for line in Path(f"/proc/{member}/smaps_rollup").read_text().splitlines()[1:]}
        except OSError:
            continue
        per_process.append({"pid": member, "rss_mb": fields.get("Rss", 0.0), "pss_mb": fields.get("Pss", 0.0)})
    return {"processes": per_process, "rss_mb_sum": sum(p["rss_mb"] for p in per_process),
            "pss_mb_sum": sum(p["pss_mb"] for p in per_process)}


def rss_mb(pid: int) -> float:
    """Resident memory of the service, all its processes (RSS summed)."""
    return memory_mb(pid)["rss_mb_sum"]


def start_server(model_dir: Path, extra: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "server.cli", "--model-dir", str(model_dir), "--port", str(port),
                                "--max-utterances", "64", *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, **env})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, 120, process)
    except RuntimeError:
        process.kill()
        raise
    return process, url


def rescore_bodies(utterances: list, refs: bool) -> list[bytes]:
    """One POST /v1/rescore body per utterance: its hypotheses' text, am_score and lm_score, and
    with `refs` its reference."""
    bodies = []
    for utt in utterances:
        record = utterance_to_record(utt)
        record["hyps"] = [{"text": h["text"], "am_score": h["am_score"], "lm_score": h["lm_score"]} for h in record["hyps"]]
        keys = ("utt_id", "ref", "hyps") if refs else ("utt_id", "hyps")
        bodies.append(json.dumps({"utterances": [{k: record[k] for k in keys}]}).encode())
    return bodies


async def run_load(url: str, bodies: list[bytes], concurrency: int, requests: int) -> dict:
    latencies: list[float] = []
    errors = 0
    counter = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        async def worker() -> None:
            nonlocal errors
            for i in counter:
                start = time.perf_counter()
                response = await client.post("/v1/rescore", content=bodies[i % len(bodies)],
                                             headers={"content-type": "application/json"})
                latencies.append(time.perf_counter() - start)
                errors += response.status_code != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    lat = np.array(latencies) * 1000
    return {"concurrency": concurrency, "requests": requests, "seconds": elapsed, "errors": errors,
            "utterances_per_s": requests / elapsed, "p50_ms": float(np.percentile(lat, 50)),
            "p95_ms": float(np.percentile(lat, 95)), "p99_ms": float(np.percentile(lat, 99))}


WRK_SCRIPT_TAIL = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("POST", path, {["Content-Type"] = "application/json"}, bodies[(counter % #bodies) + 1])
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %f %f %f %d\\n", summary.requests, summary.duration,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000, 0))
end
"""


def write_wrk_script(bodies: list[bytes], path: Path, url_path: str = "/v1/rescore") -> None:
    lines = [f'path = "{url_path}"', "bodies = {"] + [f"[==[{b.decode()}]==]," for b in bodies] + ["}", WRK_SCRIPT_TAIL]
    path.write_text("\n".join(lines))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its descendants, all their threads (Linux /proc;
    processes that ended during the point are not counted)."""
    total = 0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def batch_counts(url: str) -> tuple[float, float]:
    """(device calls, requests in them) so far, from the service's /metrics."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
              if line.startswith(("rescorer_batch_requests_count", "rescorer_batch_requests_sum"))}
    return values.get("rescorer_batch_requests_count", 0.0), values.get("rescorer_batch_requests_sum", 0.0)


def run_wrk(url: str, script: Path, concurrency: int, seconds: int) -> dict:
    """One wrk point; with the CPU the client itself used (its share of the shared cores)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "60s", "-s", str(script), url],
                         capture_output=True, text=True, timeout=seconds + 120, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    fields = next(line for line in out.splitlines() if line.startswith("RESULT")).split()
    requests, duration_us, errors = int(fields[1]), int(fields[2]), int(fields[3])
    elapsed = duration_us / 1e6
    return {"concurrency": concurrency, "requests": requests, "seconds": elapsed, "errors": errors,
            "utterances_per_s": requests / elapsed, "p50_ms": float(fields[4]), "p95_ms": float(fields[5]),
            "p99_ms": float(fields[6]), "client": "wrk", "client_cpu_s": client_cpu}


def library_figures(artifact, utterances: list, worker_batch: int = 12) -> dict:
    """The library's own throughput on the first 300 utterances' hypotheses (score_sentences
    in-process, no HTTP): batched and one utterance per call in one thread with the process's
    torch threads, as the `rescorer` CLI runs, and on one single-threaded worker per core (the
    service's CPU scheme) one and `worker_batch` utterances per call; interleaved, best of 3."""
    utterance_lists = [[h.words for h in utt.hyps] for utt in utterances[:300]]
    sample = [words for hyps in utterance_lists for words in hyps]
    score_sentences(artifact, sample[:500])
    cores = available_cores()
    threads = torch.get_num_threads()

    def with_workers(per_call: int) -> None:
        """The service's CPU scheme without HTTP: one single-threaded scorer per core, `per_call`
        utterances per call (1: unbatched; more: about what the service batches under load)."""
        calls = [[words for hyps in utterance_lists[i:i + per_call] for words in hyps]
                 for i in range(0, len(utterance_lists), per_call)]
        torch.set_num_threads(1)  # the pool's threads start after this, with one torch thread each
        try:
            with ThreadPoolExecutor(cores) as pool:
                list(pool.map(lambda sentences: score_sentences(artifact, sentences, max_tokens=8192), calls))
        finally:
            torch.set_num_threads(threads)

    # batched (the service's token budget), one utterance per call (what the device gains from
    # batching alone), both in this thread as the `rescorer` CLI runs, and one utterance per call
    # on per-core workers; interleaved, best of 3 rounds: this machine's speed moves between runs
    modes = {"batched": lambda: score_sentences(artifact, sample, max_tokens=8192),
             "per_utterance": lambda: [score_sentences(artifact, hyps, max_tokens=8192) for hyps in utterance_lists],
             "workers": lambda: with_workers(1),
             "workers_batched": lambda: with_workers(worker_batch)}
    seconds: dict[str, list[float]] = {mode: [] for mode in modes}
    for _ in range(3):
        for mode, run in modes.items():
            started = time.perf_counter()
            run()
            seconds[mode].append(time.perf_counter() - started)
    library_hyps_per_s = len(sample) / min(seconds["batched"])
    library_per_utterance_hyps_per_s = len(sample) / min(seconds["per_utterance"])
    library_workers_hyps_per_s = len(sample) / min(seconds["workers"])
    library_workers_batched_hyps_per_s = len(sample) / min(seconds["workers_batched"])
    print(f"library: {library_hyps_per_s:.0f} hypotheses/s batched, "
          f"{library_per_utterance_hyps_per_s:.0f} one utterance per call, "
          f"{library_workers_hyps_per_s:.0f} one utterance per call on {cores} single-threaded workers, "
          f"{library_workers_batched_hyps_per_s:.0f} {worker_batch} per call on them", flush=True)

    return {"library_hyps_per_s": library_hyps_per_s,
            "library_per_utterance_hyps_per_s": library_per_utterance_hyps_per_s,
            "library_workers_hyps_per_s": library_workers_hyps_per_s, "library_workers": cores,
            "library_workers_batched_hyps_per_s": library_workers_batched_hyps_per_s,
            "library_workers_batch_utterances": worker_batch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--precision", default="fp32", help="the service's and the library's precision, the same in"
                        " both so that the ratio compares like with like (default: fp32)")
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--split", default="dev_other")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--requests", type=int, default=300, help="requests per (mode, concurrency) point")
    parser.add_argument("--soak-requests", type=int, default=10_000)
    parser.add_argument("--client", choices=("httpx", "wrk"), default="httpx")
    parser.add_argument("--seconds", type=int, default=15, help="duration of each wrk point")
    parser.add_argument("--server-args", default="", help="extra rescorer-server flags, e.g. '--torch-threads 1'")
    parser.add_argument("--server-env", default="", help="environment for the server, e.g. 'MALLOC_ARENA_MAX=2'")
    parser.add_argument("--refs", action="store_true",
                        help="send the references too, so the service also computes WER (the library"
                             " figure stays scoring only)")
    parser.add_argument("--worker-batch", type=int, default=12,
                        help="utterances per call in the library's batched worker mode (about what the service"
                             " batches at concurrency 32; the points report the service's own figure)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    utterances = read_jsonl(args.data_dir / "librispeech-espnet2-hubert-30best" / "nbest" / f"{args.split}.jsonl.gz",
                            LIBRISPEECH_ESPNET)
    bodies = rescore_bodies(utterances, args.refs)
    hyps_per_utt = float(np.mean([len(u.hyps) for u in utterances]))

    artifact = load_artifact(args.model_dir, precision=args.precision)
    library = library_figures(artifact, utterances, args.worker_batch)
    cores = library["library_workers"]
    library_hyps_per_s = library["library_hyps_per_s"]
    library_workers_hyps_per_s = library["library_workers_hyps_per_s"]
    library_workers_batched_hyps_per_s = library["library_workers_batched_hyps_per_s"]
    library_per_utterance_hyps_per_s = library["library_per_utterance_hyps_per_s"]
    results: dict = {**library, "hyps_per_utterance": hyps_per_utt, "points": []}
    # both modes forced: the service's default is measured per model at load (server/batching_choice.py)
    for mode, extra in (("batched", ["--max-batch-requests", "100000"]), ("unbatched", ["--max-batch-requests", "1"])):
        env = dict(item.split("=", 1) for item in args.server_env.split())
        process, url = start_server(args.model_dir, ["--precision", args.precision, *extra, *args.server_args.split()],
                                    env)
        try:
            asyncio.run(run_load(url, bodies, 8, 40))  # warm-up
            script = Path(tempfile.mkdtemp()) / "rescore.lua"
            write_wrk_script(bodies[:500], script)
            for concurrency in args.concurrency:
                calls, batched_requests = batch_counts(url)
                server_cpu = cpu_seconds(process.pid)
                if args.client == "wrk":
                    point = run_wrk(url, script, concurrency, args.seconds)
                else:
                    point = asyncio.run(run_load(url, bodies, concurrency, args.requests))
                server_cpu = cpu_seconds(process.pid) - server_cpu
                calls_after, batched_after = batch_counts(url)
                # the machine's CPU the point used: the service's and (wrk) the client's, of cores x seconds
                point.update(mode=mode, hyps_per_s=point["utterances_per_s"] * hyps_per_utt,
                             requests_per_call=(batched_after - batched_requests) / max(calls_after - calls, 1),
                             server_cpu_share=server_cpu / (cores * point["seconds"]))
                if "client_cpu_s" in point:
                    point["client_cpu_share"] = point["client_cpu_s"] / (cores * point["seconds"])
                results["points"].append(point)
                print(json.dumps(point), flush=True)
            if mode == "batched" and args.soak_requests:
                memory = [rss_mb(process.pid)]
                chunk = max(1, args.soak_requests // 10)
                for _ in range(10):
                    asyncio.run(run_load(url, bodies, 32, chunk))
                    memory.append(rss_mb(process.pid))
                results["soak"] = {"requests": chunk * 10, "rss_mb": memory}
                print(json.dumps(results["soak"]), flush=True)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
    by = {(p["mode"], p["concurrency"]): p for p in results["points"]}
    if ("batched", 32) in by and ("unbatched", 32) in by:
        results["batched_over_unbatched_at_32"] = by[("batched", 32)]["utterances_per_s"] / by[("unbatched", 32)]["utterances_per_s"]
        best_service = max(p["hyps_per_s"] for p in results["points"])
        results["service_over_library"] = best_service / library_hyps_per_s
        results["service_over_library_workers"] = best_service / library_workers_hyps_per_s
        results["service_over_library_workers_batched"] = best_service / library_workers_batched_hyps_per_s
        # upper bounds on batched/unbatched at 32: the device's own gain from batching, and the
        # gain if batching also removed every per-request cost of the HTTP layer
        results["library_batched_over_per_utterance"] = library_hyps_per_s / library_per_utterance_hyps_per_s
        results["library_over_unbatched_service_at_32"] = library_hyps_per_s / by[("unbatched", 32)]["hyps_per_s"]
    results["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count()}
    results["server_args"], results["server_env"], results["client"] = args.server_args, args.server_env, args.client
    results["refs"] = args.refs
    print(json.dumps({k: v for k, v in results.items() if k != "points"}, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
