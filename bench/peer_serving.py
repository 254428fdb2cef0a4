"""`rescorer-server` against the servers a team could wrap the library in instead, on loopback.

    python -m venv build/peers && build/peers/bin/pip install -r bench/peers/requirements.txt -e .
    python bench/peer_serving.py --model-dir runs/librispeech/lm-recentered --data-dir ../shared/data \
        --out docs/bench/peer_serving_lstm.json

The same artifact and the same LibriSpeech dev_other lists (one utterance, 30 hypotheses, per
request, no reference) served by:
- `rescorer` : rescorer-server with its defaults (one process per core on CPU);
- `rescorer-1proc` : the same with --processes 1 (one process, one scoring thread per core);
- `fastapi` : a plain FastAPI endpoint calling the library once per request, under
  `uvicorn --workers <cores>` (bench/peers/fastapi_plain.py);
- `litserve` : LitServe, one inference worker per core, its batching (bench/peers/litserve_peer.py);
- `ray` : Ray Serve, one replica per core, `@serve.batch` (bench/peers/ray_peer.py);
- `pytriton` : Triton through PyTriton, one model instance per core, its dynamic batcher
  (bench/peers/pytriton_peer.py).
Inside every peer the library does the work (bench/peers/common.py: the library's JSONL
reader, one score_sentences call, the library's combination), so the scoring is the same
everywhere. What differs is the serving and what it brings: the peers run from their own
environment (--peer-python, default build/peers/bin/python) under its interpreter and with
the versions of the web stack they pin, rescorer-server under the project's; the batch waits are --batch-wait-ms (2 ms)
and batches hold at most --max-batch requests (16), on every batching peer.

Per server: wrk (Debian's package) at each --concurrency for --seconds (hypotheses/s,
p50/p95/p99 latency, errors: non-2xx and socket errors), the CPU the server's process tree
used, its resident memory after the load (RSS per process, RSS and PSS summed), then the
poisoned-batch check: a load of good requests at concurrency 32 from an httpx client for
--poison-seconds, with one poisoned request every 100 ms among them (a list the library's
reader refuses: one hypothesis carries an lm_score its siblings lack), counting the good
requests that failed. Also the library's own figures on the same hypotheses in the same run
(bench/server_load.py: library_figures). A server that cannot start is reported with the end
of its output. Loopback only, bounded in time; run it on an idle machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from server_load import (  # bench/ is this script's directory
    cpu_seconds,
    free_port,
    library_figures,
    memory_mb,
    process_tree,
    rescore_bodies,
    run_wrk,
    write_wrk_script,
)

from rescorer.artifact import load_artifact
from rescorer.formats.jsonl import read_jsonl
from rescorer.formats.score_mapping import LIBRISPEECH_ESPNET
from server.app import available_cores

ROOT = Path(__file__).resolve().parents[1]
SERVERS = ("rescorer", "rescorer-1proc", "fastapi", "litserve", "ray", "pytriton")
SENT_UTTERANCES = 500  # the first lists of dev_other, one per request


def poisoned(body: bytes) -> bytes:
    """The same request with one hypothesis carrying an lm_score its siblings lack: a list the
    library's reader refuses (rescorer.nbest.check_utterance)."""
    request = json.loads(body)
    hyps = request["utterances"][0]["hyps"]
    for h in hyps[1:]:
        h.pop("lm_score", None)
    return json.dumps(request).encode()


def triton_body(body: bytes) -> bytes:
    """The service's JSON body as one BYTES element of Triton's HTTP/JSON inference protocol."""
    return json.dumps({"inputs": [{"name": "request", "shape": [1, 1], "datatype": "BYTES",
                                   "data": [body.decode()]}]}).encode()


class Server:
    """A started server: the command, its URL path and request-body form."""

    def __init__(self, name: str, command: list[str], env: dict, port: int, path: str, wrap) -> None:
        self.name, self.port, self.path, self.wrap = name, port, path, wrap
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - open while the server runs, closed by stop()
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        self.url = f"http://127.0.0.1:{port}"

    def wait_ready(self, body: bytes, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"exited with status {self.process.returncode}")
            try:
                if httpx.post(self.url + self.path, content=self.wrap(body), timeout=30,
                              headers={"content-type": "application/json"}).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"not answering within {timeout:g} s")

    def output_tail(self, chars: int = 1500) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(60)
        # what the server left behind (Ray's raylet and workers, Triton) goes with its session
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(30)
        self.log.close()


def start(name: str, args, cores: int) -> Server:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PEER_MODEL_DIR": str(args.model_dir),
           "PEER_PRECISION": args.precision, "PEER_TORCH_THREADS": "1", "RAY_AUTH_MODE": "disabled",
           "RAY_USAGE_STATS_ENABLED": "0"}
    wait_s, batch = args.batch_wait_ms / 1000, str(args.max_batch)
    peer = [str(args.peer_python), "-m"]
    plain = lambda body: body  # noqa: E731
    if name in ("rescorer", "rescorer-1proc"):
        extra = ["--processes", "1"] if name == "rescorer-1proc" else []
        return Server(name, [sys.executable, "-m", "server.cli", "--model-dir", str(args.model_dir), "--port",
                             str(port), "--precision", args.precision, "--max-utterances", "64", *extra],
                      env, port, "/v1/rescore", plain)
    if name == "fastapi":
        return Server(name, [*peer, "uvicorn", "bench.peers.fastapi_plain:app", "--host", "127.0.0.1", "--port",
                             str(port), "--workers", str(cores), "--no-access-log", "--log-level", "warning"],
                      env, port, "/v1/rescore", plain)
    if name == "litserve":
        return Server(name, [*peer, "bench.peers.litserve_peer", str(port), str(cores), batch, str(wait_s)],
                      env, port, "/v1/rescore", plain)
    if name == "ray":
        return Server(name, [*peer, "bench.peers.ray_peer", str(port), str(cores), batch, str(wait_s)],
                      env, port, "/v1/rescore", plain)
    if name == "pytriton":
        return Server(name, [*peer, "bench.peers.pytriton_peer", str(port), str(cores), batch,
                             str(int(args.batch_wait_ms * 1000))],
                      env, port, "/v2/models/rescore/infer", triton_body)
    raise ValueError(name)


async def poison_run(server: Server, bodies: list[bytes], seconds: float, concurrency: int = 32) -> dict:
    """Good requests at `concurrency` for `seconds`, one poisoned request every 100 ms among them."""
    good_ok = good_failed = poison_sent = 0
    poison_statuses: dict[str, int] = {}
    stop_at = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency + 2, max_keepalive_connections=concurrency + 2)
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as client:
        async def good(worker: int) -> None:
            nonlocal good_ok, good_failed
            i = worker
            while time.monotonic() < stop_at:
                try:
                    response = await client.post(server.path, content=server.wrap(bodies[i % len(bodies)]),
                                                 headers=headers)
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                good_ok += ok
                good_failed += not ok
                i += concurrency

        async def poison() -> None:
            nonlocal poison_sent
            await asyncio.sleep(0.5)
            i = 0
            while time.monotonic() < stop_at - 0.5:
                try:
                    response = await client.post(server.path, content=server.wrap(poisoned(bodies[i % len(bodies)])),
                                                 headers=headers)
                    status = str(response.status_code)
                except httpx.HTTPError as e:
                    status = type(e).__name__
                poison_statuses[status] = poison_statuses.get(status, 0) + 1
                poison_sent += 1
                i += 1
                await asyncio.sleep(0.1)

        await asyncio.gather(poison(), *(good(w) for w in range(concurrency)))
    return {"seconds": seconds, "concurrency": concurrency, "good_ok": good_ok, "good_failed": good_failed,
            "poisoned_sent": poison_sent, "poisoned_statuses": poison_statuses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--servers", nargs="+", default=list(SERVERS), choices=SERVERS)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--seconds", type=int, default=8, help="duration of each wrk point")
    parser.add_argument("--poison-seconds", type=float, default=4.0)
    parser.add_argument("--batch-wait-ms", type=float, default=2.0)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--peer-python", type=Path, default=ROOT / "build" / "peers" / "bin" / "python")
    parser.add_argument("--start-timeout", type=float, default=240.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    utterances = read_jsonl(args.data_dir / "librispeech-espnet2-hubert-30best" / "nbest" / "dev_other.jsonl.gz",
                            LIBRISPEECH_ESPNET)
    utterances = utterances[:SENT_UTTERANCES]  # the lists sent, and the library's figures, are the same ones
    bodies = rescore_bodies(utterances, refs=False)
    hyps_per_utt = sum(len(u.hyps) for u in utterances) / len(utterances)
    cores = available_cores()
    results: dict = {"model_dir": str(args.model_dir), "precision": args.precision, "cores": cores,
                     "hyps_per_utterance": hyps_per_utt, "batch_wait_ms": args.batch_wait_ms,
                     "max_batch": args.max_batch, "seconds": args.seconds,
                     "machine": {"platform": platform.platform(), "cpus": os.cpu_count()}}
    results.update(library_figures(load_artifact(args.model_dir, precision=args.precision), utterances))
    results["servers"] = {}
    scripts = tempfile.TemporaryDirectory(prefix="peer-serving-")  # wrk's request scripts, removed at the end
    for name in args.servers:
        entry: dict = {"points": []}
        results["servers"][name] = entry
        server = start(name, args, cores)
        try:
            started = time.monotonic()
            server.wait_ready(bodies[0], args.start_timeout)
            entry["start_s"] = time.monotonic() - started
            if name.startswith("rescorer"):  # the batching choice it measured at load (server/batching_choice.py)
                entry["batching"] = {m["name"]: m["batching"] for m in httpx.get(server.url + "/v1/models").json()}
            script = Path(scripts.name) / f"{name}.lua"
            write_wrk_script([server.wrap(b) for b in bodies], script, server.path)
            run_wrk(server.url, script, 8, 2)  # warm-up
            for concurrency in args.concurrency:
                cpu = cpu_seconds(server.process.pid)
                point = run_wrk(server.url, script, concurrency, args.seconds)
                point["server_cpu_share"] = (cpu_seconds(server.process.pid) - cpu) / (cores * point["seconds"])
                point["hyps_per_s"] = point["utterances_per_s"] * hyps_per_utt
                entry["points"].append(point)
                print(name, json.dumps(point), flush=True)
            entry["memory"] = memory_mb(server.process.pid)
            entry["processes"] = len(process_tree(server.process.pid))
            print(name, "memory", json.dumps({k: v for k, v in entry["memory"].items() if k != "processes"}), flush=True)
            entry["poison"] = asyncio.run(poison_run(server, bodies, args.poison_seconds))
            print(name, "poison", json.dumps(entry["poison"]), flush=True)
        except Exception as e:  # a peer that cannot run here is a result: say what failed
            entry["error"] = f"{type(e).__name__}: {e}"
            entry["output_tail"] = server.output_tail()
            print(name, "FAILED", entry["error"], "\n", entry["output_tail"], flush=True)
        finally:
            server.stop()
    scripts.cleanup()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
