"""A `/v1/rescore` request at the service's documented limits, timed against its deadline.

    python bench/request_at_limits.py --model-dir build/demo/run/artifact --out docs/bench/request_at_limits.json

Builds the largest request the default limits allow (server/settings.py, docs/SERVER.md):
`max_utterances` utterances, as many hypotheses of `max_words_per_hyp` words as fit in
`max_body_bytes`, and references as long as the alignment budget (`max_alignment_cells`)
allows; sends it to a real server on 127.0.0.1 (the tests' harness) with the default
settings, and reports the status, the latency and the deadline. Then one more hypothesis
word past the words-per-hypothesis limit, which must be refused (422) at once.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rescorer.artifact import load_artifact
from server.settings import Settings
from tests.server_harness import running_server


def request_at_limits(settings: Settings, words: list[str]) -> dict:
    """The biggest /v1/rescore body the limits admit (under max_body_bytes). Every hypothesis and
    every reference is a different word sequence, so no alignment is reused (the worst case)."""

    def sentence(length: int, start: int) -> str:
        return " ".join(words[(start + i) % len(words)] for i in range(length))

    hyp_words = settings.max_words_per_hyp
    per_hyp = len(json.dumps({"text": sentence(hyp_words, 0), "am_score": -12.345678})) + 2
    utterances = settings.max_utterances
    hyps = max(1, min(settings.max_hyps_per_utterance, (settings.max_body_bytes * 8 // 10) // (utterances * per_hyp)))
    ref_words = max(1, min(settings.max_words_per_ref, settings.max_alignment_cells // (utterances * hyps * hyp_words)))
    return {"utterances": [{"utt_id": f"u{u}", "ref": sentence(ref_words, 7 * u),
                            "hyps": [{"text": sentence(hyp_words, u * hyps + h + 1), "am_score": -12.345678 - h}
                                     for h in range(hyps)]}
                           for u in range(utterances)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    settings = Settings(model_dir=args.model_dir)
    vocab = [w for w in load_artifact(args.model_dir).vocab.words if not w.startswith("<")]
    body = request_at_limits(settings, vocab)
    raw = json.dumps(body).encode()
    one_past = json.loads(raw)
    one_past["utterances"][0]["hyps"][0]["text"] += " " + vocab[0]
    with running_server(settings) as (url, _):
        start = time.perf_counter()
        response = httpx.post(f"{url}/v1/rescore", content=raw, timeout=settings.request_timeout_s + 30,
                              headers={"content-type": "application/json"})
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        refused = httpx.post(f"{url}/v1/rescore", json=one_past, timeout=30)
        refused_seconds = time.perf_counter() - start
    u = body["utterances"]
    result = {
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "model": str(args.model_dir), "body_bytes": len(raw), "utterances": len(u), "hyps_per_utterance": len(u[0]["hyps"]),
        "words_per_hyp": len(u[0]["hyps"][0]["text"].split()), "ref_words": len(u[0]["ref"].split()),
        "tokens_scored": sum(len(h["text"].split()) + 1 for x in u for h in x["hyps"]),
        "status": response.status_code, "seconds": seconds, "deadline_s": settings.request_timeout_s,
        "one_past_status": refused.status_code, "one_past_seconds": refused_seconds,
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
