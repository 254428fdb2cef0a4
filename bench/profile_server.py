"""Where the service's CPU time goes under load: py-spy samples of rescorer-server while wrk
sends it LibriSpeech 30-best rescoring requests (the load of bench/server_load.py).

    pip install py-spy   # a profiler, not a dependency of the project
    python bench/profile_server.py --model-dir runs/librispeech/lm-recentered --data-dir ../shared/data

Prints the share of samples in each thread kind (scoring workers, event loop, thread pool) and
in the parts that matter (the LSTM, the padded batches, request validation, building the
response, the access log). Shares of samples, not seconds: idle waits are sampled too.
"""

from __future__ import annotations

import argparse
import json
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
from server.readiness import wait_until_ready

PARTS = {  # a frame's function name -> the part it belongs to
    "LSTM.forward": "LSTM", "make_sentence_batches": "padded batches", "_to_utterances": "request -> utterances",
    "check_rescore_limits": "limits", "request_body_to_args": "request validation", "_respond": "response building",
    "json_response": "response serialization", "Logger.info": "access log",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=12)
    parser.add_argument("--server-args", default="--precision fp32")
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
    for line in samples.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames, n = stack.split(";"), int(count)
        total += n
        name = frames[0]
        threads["scoring workers" if "rescorer-scorer" in name else "event loop" if "MainThread" in name
                else "thread pool" if "AnyIO" in name else "other"] += n
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


if __name__ == "__main__":
    main()
