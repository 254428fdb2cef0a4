"""The demo's last step: serve the demo artifact, rescore the demo test lists over HTTP.

    python -m server.demo --model-dir build/demo/run/artifact --nbest build/demo/data/nbest/test.jsonl \
        --weights build/demo/report/report.json

Starts `rescorer-server` on a free 127.0.0.1 port, waits until it is ready, posts the lists
in requests of --batch utterances, prints the WER before and after rescoring as the service
computed them, and stops the server with SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from rescorer.formats.jsonl import read_jsonl, utterance_to_record
from rescorer.tuning import check_not_worse_than_first_pass
from server.readiness import wait_until_ready


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--nbest", type=Path, required=True)
    parser.add_argument("--weights", type=Path, help="a report.json of `rescorer eval` (its tuned weights)")
    parser.add_argument("--batch", type=int, default=50, help="utterances per request")
    args = parser.parse_args(argv)

    utterances = read_jsonl(args.nbest)
    weights = None
    if args.weights:
        report = json.loads(args.weights.read_text())
        note = check_not_worse_than_first_pass(report, str(args.weights), accept=True)  # a demo shows either way
        if note is not None:
            print(f"WARNING: {args.weights}: tuned weights {note}", file=sys.stderr)
        weights = report["weights"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "server.cli", "--model-dir", str(args.model_dir),
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until_ready(url, 60, server)
        except RuntimeError as e:
            print(f"server did not start ({e}): {server.stderr.read().decode()[-2000:]}", file=sys.stderr)
            return 1
        print(f"server ready at {url}; sending {len(utterances)} utterances in requests of {args.batch}")
        errors_before = errors_after = errors_oracle = words = 0.0
        for start in range(0, len(utterances), args.batch):
            chunk = [utterance_to_record(u) for u in utterances[start : start + args.batch]]
            body = {"utterances": [{k: r[k] for k in ("utt_id", "ref", "hyps")} for r in chunk]}
            if weights:
                body["weights"] = weights
            response = httpx.post(f"{url}/v1/rescore", json=body, timeout=60)
            response.raise_for_status()
            wer = response.json()["wer"]
            errors_before += wer["before"] * wer["ref_words"]
            errors_after += wer["after"] * wer["ref_words"]
            errors_oracle += wer["oracle"] * wer["ref_words"]
            words += wer["ref_words"]
        print(f"WER over HTTP: first pass {100 * errors_before / words:.2f} % -> rescored"
              f" {100 * errors_after / words:.2f} % (oracle {100 * errors_oracle / words:.2f} %, {int(words)} words)")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        print("server stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
