"""Where the service's CPU time goes under load, while wrk sends rescorer-server LibriSpeech
30-best rescoring requests (the load of bench/server_load.py).

    pip install py-spy   # a profiler, not a dependency of the project
    python bench/profile_server.py --model-dir runs/librispeech/lm-recentered --data-dir ../shared/data

Two passes. First, with no profiler attached, the CPU seconds each thread of the server used
(Linux /proc; threads named by `py-spy dump`), as shares of the machine: the scoring workers,
the event loop, the thread pool, the load generator, and what was left idle. Second, py-spy
samples: the share in each thread kind and in the parts that matter (the LSTM, the padded
batches, request validation, building the response, the access log), and the functions with
the most samples per thread kind. Samples are not seconds: a thread waiting for the GIL or on
a condition can be sampled as running, which is why the first pass exists.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.server_load import free_port, run_wrk, write_wrk_script
from rescorer.formats.reader import NbestSource, read_nbest
from server.app import available_cores
from server.readiness import wait_until_ready

PARTS = {  # a frame's function name -> the part it belongs to
    "LSTM.forward": "LSTM", "make_sentence_batches": "padded batches", "_to_utterances": "request -> utterances",
    "check_rescore_limits": "limits", "request_body_to_args": "request validation", "_respond": "response building",
    "json_response": "response serialization", "Logger.info": "access log",
}


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of a process so far (Linux /proc)."""
    seconds = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rpartition(")")[2].split()
        except OSError:  # the thread ended meanwhile
            continue
        seconds[int(task.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return seconds


def thread_kinds(spy: str, pid: int) -> dict[int, str]:
    """Native thread id -> kind, from the Python thread names `py-spy dump` prints; threads
    without Python frames (torch's and the allocator's own) are not listed."""
    dump = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=60).stdout
    return {int(tid): kind_of(name) for tid, name in re.findall(r'^Thread (\d+) \(\w+\): "([^"]*)"', dump, re.M)}


def kind_of(thread_name: str) -> str:
    return ("scoring workers" if "rescorer-scorer" in thread_name else "event loop" if "MainThread" in thread_name
            else "thread pool" if "AnyIO" in thread_name else "other")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=12)
    parser.add_argument("--server-args", default="--precision fp32 --processes 1",
                        help="rescorer-server flags (default: one serving process, whose threads are measured)")
    parser.add_argument("--top", type=int, default=8, help="functions listed per thread kind")
    args = parser.parse_args()
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if not spy or not shutil.which("wrk"):
        sys.exit("needs py-spy (pip install py-spy) and wrk (Debian's package)")
    utts = read_nbest(NbestSource(str(args.data_dir / "librispeech-espnet2-hubert-30best" / "nbest" / "dev_other.jsonl.gz"),
                                  score_mapping="am=0.6*decoder+0.4*ctc,lm=lm"))[:300]
    bodies = [json.dumps({"utterances": [{"utt_id": u.utt_id, "hyps": [
        {"text": h.text, "am_score": h.am_score, "lm_score": h.lm_score} for h in u.hyps]}]}).encode() for u in utts]
    work = Path(tempfile.mkdtemp())
    script, samples = work / "rescore.lua", work / "samples.txt"
    write_wrk_script(bodies, script)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "server.cli", "--model-dir", str(args.model_dir), "--port", str(port),
                               *args.server_args.split()], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, 60, server)
        # first the CPU each thread really used (no profiler attached), then the samples
        run_wrk(url, script, 8, 3)  # warm-up
        before, started = thread_cpu(server.pid), time.perf_counter()
        timed = run_wrk(url, script, args.concurrency, args.seconds)
        after, elapsed = thread_cpu(server.pid), time.perf_counter() - started
        kinds = thread_kinds(spy, server.pid)
        cpu = Counter()
        for tid, seconds in after.items():
            cpu[kinds.get(tid, "other")] += seconds - before.get(tid, 0.0)
        cores = available_cores()  # the cores this process may use, as bench/server_load.py counts them
        machine = cores * elapsed
        print(f"CPU time by thread at {timed['utterances_per_s']:.1f} utterances/s (concurrency {args.concurrency},"
              f" {elapsed:.1f} s, no profiler attached), as shares of the machine's {cores} cores:")
        for kind, seconds in cpu.most_common():
            print(f"  {kind:18s} {100 * seconds / machine:5.1f} %")
        print(f"  {'the load generator':18s} {100 * timed['client_cpu_s'] / machine:5.1f} %")
        print(f"  {'idle or elsewhere':18s} {100 * (1 - (sum(cpu.values()) + timed['client_cpu_s']) / machine):5.1f} %")
        record = subprocess.Popen([spy, "record", "--pid", str(server.pid), "--duration", str(args.seconds + 2),
                                   "--format", "raw", "--output", str(samples), "--threads", "--nonblocking"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        load = run_wrk(url, script, args.concurrency, args.seconds)
        record.wait(timeout=args.seconds + 60)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    threads, parts, total = Counter(), Counter(), 0
    leaves: dict[str, Counter] = {}  # thread kind -> the function each sample was in (self time)
    for line in samples.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames, n = stack.split(";"), int(count)
        total += n
        name = frames[0]
        kind = kind_of(name)
        threads[kind] += n
        leaves.setdefault(kind, Counter())[frames[-1] if len(frames) > 1 else "(no Python frame)"] += n
        functions = {f.split(" (")[0] for f in frames[1:]}
        for function, part in PARTS.items():
            if function in functions:
                parts[part] += n
    print(f"load: {load['utterances_per_s']:.1f} utterances/s at concurrency {args.concurrency}, {load['errors']} errors")
    print(f"{total} samples")
    for kind, n in threads.most_common():
        print(f"  thread {kind:18s} {100 * n / total:5.1f} %")
    for part, n in parts.most_common():
        print(f"  {part:26s} {100 * n / total:5.1f} %")
    for kind, counter in leaves.items():
        print(f"the {args.top} functions with the most samples in the {kind} (self time):")
        for function, n in counter.most_common(args.top):
            print(f"  {100 * n / total:5.1f} %  {function}")


if __name__ == "__main__":
    main()
