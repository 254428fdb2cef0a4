"""The service against a real uvicorn server on 127.0.0.1 (bounded request counts and times)."""

import concurrent.futures
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

import server.batcher as batcher_module
from rescorer.artifact import save_artifact
from rescorer.combination import Weights, build_arrays, total_scores
from rescorer.rerank import rerank
from rescorer.sentence_scoring import score_sentences
from rescorer.wer.nbest_evaluation import error_table, evaluate_set
from server.readiness import wait_until_ready
from server.settings import Settings
from tests.nbest_fixtures import tiny_artifact, tiny_utterances
from tests.server_harness import free_port, running_server

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    save_artifact(tiny_artifact(), root / "tiny")
    return root


def _body(utterances=None, **extra):
    utterances = utterances or tiny_utterances()
    return {"utterances": [{"utt_id": u.utt_id, "ref": u.ref,
                            "hyps": [{"text": h.text, "am_score": h.am_score, "lm_score": h.lm_score} for h in u.hyps]}
                           for u in utterances], **extra}


def test_rescore_matches_the_library_and_reports_wer(model_dir):
    with running_server(Settings(model_dir=model_dir)) as (url, _):
        weights = {"am_weight": 1.0, "lm_weight": 0.7, "interp_weight": 0.6, "word_penalty": 0.1}
        response = httpx.post(f"{url}/v1/rescore", json=_body(weights=weights), timeout=30)
    assert response.status_code == 200, response.text
    data = response.json()
    utterances = tiny_utterances()
    scores = score_sentences(tiny_artifact(), [h.words for u in utterances for h in u.hyps])
    arrays = build_arrays(utterances, scores.log_probs, scores.num_oov)
    totals = total_scores(arrays, Weights(**weights, oov_penalty=0.0))
    served = {(u["utt_id"], h["text"]): h for u in data["utterances"] for h in u["hyps"]}
    for u, utt in enumerate(utterances):
        for n, hyp in enumerate(utt.hyps):
            h = served[(utt.utt_id, hyp.text)]
            assert h["total"] == pytest.approx(totals[arrays.offsets[u] + n], abs=1e-4)
            assert h["first_pass_rank"] == n + 1
    library_order = rerank(utterances, arrays, Weights(**weights, oov_penalty=0.0))
    for u, ranked in zip(data["utterances"], library_order, strict=True):
        assert [h["rank"] for h in u["hyps"]] == list(range(1, len(u["hyps"]) + 1))
        assert [h["text"] for h in u["hyps"]] == [h.text for h in ranked.hyps]  # the library's order
        assert u["best"] == u["hyps"][0]["text"]
    assert data["wer"]["ref_words"] == 11
    library = evaluate_set(utterances, arrays, error_table(utterances), Weights(**weights, oov_penalty=0.0), resamples=10)
    assert data["wer"]["before"] == pytest.approx(library.first_pass.wer)
    assert data["wer"]["after"] == pytest.approx(library.rescored.wer)
    assert data["wer"]["oracle"] == pytest.approx(library.oracle.wer)


@pytest.mark.parametrize("pays", [True, False])
def test_concurrent_requests_share_device_calls_where_batching_pays_with_the_same_answers(model_dir, monkeypatch, pays):
    import server.registry as registry_module
    from server.batching_choice import BatchingChoice

    monkeypatch.setattr(registry_module, "choose_batching",
                        lambda *a: BatchingChoice(pays, 1.5 if pays else 0.9, 1.0 if pays else -0.1, "x"))
    settings = Settings(model_dir=model_dir, max_delay_ms=200, batch_tokens=100_000)
    bodies = [{"sentences": [f"the cat sat {'on the mat ' * (i % 3)}".strip(), "a dog ran"]} for i in range(12)]
    with running_server(settings) as (url, app):
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            responses = list(pool.map(lambda b: httpx.post(f"{url}/v1/score", json=b, timeout=30), bodies))
        metrics = httpx.get(f"{url}/metrics", timeout=5).text
        listed = httpx.get(f"{url}/v1/models", timeout=5).json()[0]
    assert all(r.status_code == 200 for r in responses)
    batches = float(next(line.split()[-1] for line in metrics.splitlines() if line.startswith("rescorer_batch_requests_count")))
    if pays:
        assert batches < 12  # several requests shared a device call
    else:
        assert batches == 12  # each request alone, though all twelve waited together
    assert listed["batches_requests"] is pays
    for body, response in zip(bodies, responses, strict=True):
        expected = score_sentences(tiny_artifact(), [s.split() for s in body["sentences"]]).log_probs
        np.testing.assert_allclose([s["log_prob"] for s in response.json()["scores"]], expected, atol=1e-4)


def test_a_full_queue_answers_503_with_retry_after(model_dir):
    settings = Settings(model_dir=model_dir, max_delay_ms=400, max_batch_requests=1000, batch_tokens=100_000, queue_tokens=20)
    body = {"sentences": ["the cat sat on the mat"] * 3}  # 21 tokens: one fits in the queue, two do not
    with running_server(settings) as (url, _), concurrent.futures.ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda _: httpx.post(f"{url}/v1/score", json=body, timeout=30), range(6)))
    codes = sorted(r.status_code for r in responses)
    assert 200 in codes and 503 in codes and set(codes) <= {200, 503}
    assert all(r.headers.get("retry-after") for r in responses if r.status_code == 503)


def test_a_request_past_its_deadline_answers_504(model_dir):
    settings = Settings(model_dir=model_dir, max_delay_ms=1000, max_batch_requests=1000, batch_tokens=100_000, request_timeout_s=0.1)
    with running_server(settings) as (url, _):
        response = httpx.post(f"{url}/v1/score", json={"sentences": ["the cat"]}, timeout=30)
    assert response.status_code == 504 and "deadline" in response.json()["detail"]


def test_a_request_that_fails_in_scoring_fails_alone(model_dir, monkeypatch):
    real = batcher_module.score_sentences

    def fragile(artifact, sentences, **kwargs):
        if any("away" in words for words in sentences):
            raise RuntimeError("injected failure")
        return real(artifact, sentences, **kwargs)

    monkeypatch.setattr(batcher_module, "score_sentences", fragile)
    settings = Settings(model_dir=model_dir, max_delay_ms=300, max_batch_requests=1000, batch_tokens=100_000)
    bodies = [{"sentences": ["a dog ran far away"]}] + [{"sentences": ["the cat sat"]}] * 5
    with running_server(settings) as (url, _), concurrent.futures.ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda b: httpx.post(f"{url}/v1/score", json=b, timeout=30), bodies))
    assert responses[0].status_code == 500
    assert [r.status_code for r in responses[1:]] == [200] * 5


@pytest.mark.parametrize("body, loc", [
    ({"utterances": [{"utt_id": "u", "hyps": [{"text": "a"}]}]}, ["body", "utterances", 0, "hyps", 0, "am_score"]),
    ({"utterances": [{"utt_id": "u", "hyps": []}]}, ["body", "utterances", 0, "hyps"]),
    ({"utterances": [{"utt_id": "u", "hyps": [{"text": "a", "am_score": -1, "lm_score": 3}]}]},
     ["body", "utterances", 0, "hyps", 0, "lm_score"]),
    ({"utterances": [{"utt_id": "u", "hyps": [{"text": "a " * 50, "am_score": -1}]}]},
     ["body", "utterances", 0, "hyps", 0, "text"]),
    ({"utterances": [{"utt_id": f"u{i}", "hyps": [{"text": "a", "am_score": -1}]} for i in range(9)]}, ["body", "utterances"]),
])
def test_schema_and_limit_errors_are_422_naming_the_field_path(model_dir, body, loc):
    with running_server(Settings(model_dir=model_dir, max_utterances=8, max_words_per_hyp=40)) as (url, _):
        response = httpx.post(f"{url}/v1/rescore", json=body, timeout=30)
    assert response.status_code == 422
    assert any(e["loc"] == loc for e in response.json()["detail"]), response.json()


def test_bodies_models_and_tokens_are_checked(model_dir):
    with running_server(Settings(model_dir=model_dir, max_body_bytes=2000, token="s3cret")) as (url, _):
        auth = {"authorization": "Bearer s3cret"}
        assert httpx.post(f"{url}/v1/score", json={"sentences": ["a"]}, timeout=10).status_code == 401
        assert httpx.post(f"{url}/v1/score", json={"sentences": ["a"]}, headers={"authorization": "Bearer no"},
                          timeout=10).status_code == 401
        assert httpx.post(f"{url}/v1/score", json={"sentences": ["a"]}, headers=auth, timeout=10).status_code == 200
        big = {"sentences": ["the cat"] * 400}
        assert httpx.post(f"{url}/v1/score", json=big, headers=auth, timeout=10).status_code == 413
        for name in ("nope", "../tiny", "/etc/passwd"):
            response = httpx.post(f"{url}/v1/score", json={"model": name, "sentences": ["a"]}, headers=auth, timeout=10)
            assert response.status_code == 404
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
        models = httpx.get(f"{url}/v1/models", headers=auth, timeout=10).json()
        assert [m["name"] for m in models] == ["tiny"] and models[0]["output_kind"] == "self_normalized"
        # with a token, the open routes name no model, and the rest need the token
        ready = httpx.get(f"{url}/readyz", timeout=10)
        assert ready.status_code == 200 and ready.json() == {"status": "ready"}
        for route in ("/metrics", "/docs", "/openapi.json", "/redoc"):
            assert httpx.get(f"{url}{route}", timeout=10).status_code == 401, route
            assert httpx.get(f"{url}{route}", headers=auth, timeout=10).status_code == 200, route


def test_a_token_read_from_a_file_with_a_trailing_newline_authenticates(model_dir):
    with running_server(Settings(model_dir=model_dir, token="s3cret\n")) as (url, _):
        response = httpx.post(f"{url}/v1/score", json={"sentences": ["a"]},
                              headers={"authorization": "Bearer s3cret"}, timeout=10)
        assert response.status_code == 200
    for bad in ("s3 cret", "s3cr\u00e9t", "s3\x00cret", "  \n"):
        with pytest.raises(ValueError, match="token"):
            Settings(model_dir=model_dir, token=bad)


def test_kaldi_form_keeps_keys_and_order(model_dir):
    with running_server(Settings(model_dir=model_dir)) as (url, _):
        response = httpx.post(f"{url}/v1/score/kaldi", content=b"k2 the cat sat\nk1 a dog\nk3\n", timeout=10)
        bad = httpx.post(f"{url}/v1/score/kaldi", content=b"k1 \xff\n", timeout=10)
    lines = [line.split() for line in response.text.splitlines()]
    assert [k for k, _ in lines] == ["k2", "k1", "k3"]
    expected = score_sentences(tiny_artifact(), [["the", "cat", "sat"], ["a", "dog"], []]).log_probs
    np.testing.assert_allclose([-float(c) for _, c in lines], expected, atol=1e-5)
    assert bad.status_code == 422


def test_metrics_expose_requests_latency_batches_and_log_z_telemetry(model_dir):
    with running_server(Settings(model_dir=model_dir, telemetry_share=1.0)) as (url, _):
        httpx.post(f"{url}/v1/score", json={"sentences": ["the cat sat", "a dog"]}, timeout=10)
        httpx.post(f"{url}/v1/score", json={"sentences": []}, timeout=10)
        httpx.get(f"{url}/v1/no/such/route", timeout=10)
        text = httpx.get(f"{url}/metrics", timeout=10).text
    for line in ('rescorer_requests_total{route="/v1/score",status="200"} 1.0',
                 'rescorer_requests_total{route="/v1/score",status="422"} 1.0',
                 'rescorer_requests_total{route="unmatched",status="404"} 1.0',
                 'rescorer_request_latency_seconds_count{route="/v1/score"} 2.0'):
        assert line in text, line
    for name in ("rescorer_requests_total", "rescorer_request_latency_seconds_bucket", "rescorer_queue_tokens",
                 "rescorer_batch_hypotheses_bucket", "rescorer_batch_tokens_bucket", "rescorer_tokens_scored_total",
                 "rescorer_scoring_seconds_total", "rescorer_telemetry_seconds_total",
                 'rescorer_log_z_count{model="tiny"}', 'rescorer_log_z_mean{model="tiny"}'):
        assert name in text, name


def test_sigterm_finishes_requests_in_flight_then_exits(model_dir, tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "server.cli", "--model-dir", str(model_dir), "--port", str(port),
                                "--max-delay-ms", "4000", "--max-batch-requests", "1000", "--batch-tokens", "100000"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url)
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(httpx.post, f"{url}/v1/score", json={"sentences": ["the cat sat"]}, timeout=30)
                       for _ in range(3)]
            deadline = time.monotonic() + 3.5  # wait until all three wait in the batcher's 4 s window
            while time.monotonic() < deadline and "rescorer_queue_requests 3.0" not in httpx.get(f"{url}/metrics").text:
                time.sleep(0.05)
            process.send_signal(signal.SIGTERM)
            codes = [f.result().status_code for f in futures]
        assert codes == [200, 200, 200]
        # uvicorn re-raises the signal once its graceful shutdown is complete
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)
        assert b"Application shutdown complete" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _alignment_heavy_body(utterances: int = 20) -> dict:
    """About the default alignment budget: 1000-word references, each its own, one 198-word
    hypothesis each, all wrong (pure-Python alignment, seconds)."""
    hyp = " ".join(["the cat sat"] * 66)
    return {"utterances": [{"utt_id": f"u{i}", "hyps": [{"text": hyp, "am_score": -1.0}],
                            "ref": " ".join(["a"] * 999 + [f"w{i}"])} for i in range(utterances)]}


def test_the_deadline_covers_the_alignments_and_sigterm_during_them_answers_504_without_a_traceback(model_dir):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "server.cli", "--model-dir", str(model_dir), "--port", str(port),
                                "--request-timeout-s", "0.3"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url)
        start = time.perf_counter()
        late = httpx.post(f"{url}/v1/rescore", json=_alignment_heavy_body(), timeout=30)
        answered_s = time.perf_counter() - start
        assert late.status_code == 504 and "deadline" in late.text
        # answered at the deadline, not after the work: sooner than the alignments alone take here
        # (a ratio on one machine, not a wall-clock bound)
        from rescorer.wer.counts import alignment_counts

        body = _alignment_heavy_body()
        start = time.perf_counter()
        alignment_counts([u["ref"] for u in body["utterances"]], [u["hyps"][0]["text"] for u in body["utterances"]])
        assert answered_s < time.perf_counter() - start
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(httpx.post, f"{url}/v1/rescore", json=_alignment_heavy_body(), timeout=30)
            time.sleep(0.15)
            process.send_signal(signal.SIGTERM)
            assert in_flight.result().status_code in (504, 503)
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)
        output = process.stdout.read()
        assert b"Application shutdown complete" in output
        assert b"Traceback" not in output and b"CancelledError" not in output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_weights_come_from_the_request_then_the_artifact_then_the_settings(tmp_path):
    from rescorer.cli import main as rescorer_main

    lm = save_artifact(tiny_artifact(), tmp_path / "models" / "tiny")
    assert rescorer_main(["set-weights", str(lm), "--lm-weight", "0.3", "--word-penalty", "1.5"]) == 0
    with running_server(Settings(model_dir=tmp_path / "models", interp_weight=0.25)) as (url, _):
        tuned = httpx.post(f"{url}/v1/rescore", json=_body(), timeout=30).json()["weights"]
        given = httpx.post(f"{url}/v1/rescore", json=_body(weights={"lm_weight": 2.0}), timeout=30).json()["weights"]
    assert (tuned["lm_weight"], tuned["word_penalty"], tuned["interp_weight"]) == (0.3, 1.5, 0.5)
    assert given["lm_weight"] == 2.0 and given["word_penalty"] == 1.5


def test_on_cpu_each_core_gets_a_single_threaded_scoring_worker_and_batches_do_not_wait(model_dir, monkeypatch):
    from server.app import batching_delay_ms, scoring_threads

    cores = len(os.sched_getaffinity(0))
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert scoring_threads(Settings(model_dir=model_dir), cpu) == (cores, 1)
    assert scoring_threads(Settings(model_dir=model_dir, scoring_workers=1), cpu) == (1, cores)
    assert scoring_threads(Settings(model_dir=model_dir, scoring_workers=1, torch_threads=3), cpu) == (1, 3)
    assert scoring_threads(Settings(model_dir=model_dir), cuda)[0] == 1
    assert batching_delay_ms(Settings(model_dir=model_dir), cpu) == 0
    assert batching_delay_ms(Settings(model_dir=model_dir), cuda) > 0
    assert batching_delay_ms(Settings(model_dir=model_dir, max_delay_ms=7), cpu) == 7
    real, seen = batcher_module.score_sentences, []

    def noting_threads(*args, **kwargs):
        seen.append(torch.get_num_threads())  # as the scoring worker's thread sees it
        return real(*args, **kwargs)

    monkeypatch.setattr(batcher_module, "score_sentences", noting_threads)
    with running_server(Settings(model_dir=model_dir, scoring_workers=2, torch_threads=1)) as (url, app):
        assert len(app.state.batcher._threads) == 2
        assert httpx.post(f"{url}/v1/score", json={"sentences": ["the cat"]}, timeout=10).status_code == 200
    assert seen == [1]


def test_request_headers_past_the_limit_are_answered_431_before_the_token_check(model_dir):
    import socket

    from server.connections import MAX_HEADER_BYTES

    with running_server(Settings(model_dir=model_dir, token="s3cret")) as (url, _):
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(b"POST /v1/score HTTP/1.1\r\nhost: x\r\n")
            filler = b"x-filler: " + b"a" * 1000 + b"\r\n"
            answer = b""
            try:
                for _ in range(4 * MAX_HEADER_BYTES // len(filler)):  # never finishes its headers
                    conn.sendall(filler)
            except OSError:  # closed on us while sending: what the limit is for
                pass
            try:
                while chunk := conn.recv(4096):
                    answer += chunk
            except OSError:
                pass
        assert answer.startswith(b"HTTP/1.1 431"), answer[:80]
        # a request whose headers fit is served as before
        response = httpx.post(f"{url}/v1/score", json={"sentences": ["a"]},
                              headers={"authorization": "Bearer s3cret", "x-pad": "b" * 20_000}, timeout=10)
        assert response.status_code == 200


def test_uvicorns_own_command_line_is_refused_with_a_message_naming_rescorer_server(model_dir):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RESCORER_MODEL_DIR": str(model_dir)}
    done = subprocess.run([sys.executable, "-m", "uvicorn", "--factory", "server.app:create_app", "--port",
                           str(free_port())], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "start the service with rescorer-server" in done.stderr


def test_rescorer_server_honours_settings_given_as_variables(model_dir):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RESCORER_MODEL_DIR": str(model_dir), "RESCORER_PORT": str(port),
           "RESCORER_MAX_SENTENCES": "2", "RESCORER_TOKEN": "t0k\n"}
    process = subprocess.Popen([sys.executable, "-m", "server.cli"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}")
        auth = {"authorization": "Bearer t0k"}
        ok = httpx.post(f"http://127.0.0.1:{port}/v1/score", json={"sentences": ["a", "b"]}, headers=auth, timeout=10)
        over = httpx.post(f"http://127.0.0.1:{port}/v1/score", json={"sentences": ["a"] * 3}, headers=auth, timeout=10)
        assert ok.status_code == 200 and over.status_code == 422
    finally:
        process.terminate()
        process.wait(timeout=60)


def test_batching_across_requests_is_measured_on_cpu_and_taken_on_accelerators():
    from server.batching_choice import MIN_SAVING_MS, choose_batching

    cpu = choose_batching(tiny_artifact(), torch.device("cpu"), 8192)
    assert cpu.gain is not None and cpu.gain > 0 and cpu.saving_ms is not None
    assert cpu.batch_across_requests == (cpu.saving_ms >= MIN_SAVING_MS)
    assert f"{cpu.gain:.2f}x" in cpu.reason and f"{cpu.saving_ms:.2f} ms" in cpu.reason
    accelerator = choose_batching(tiny_artifact(), torch.device("cuda"), 8192)  # nothing runs on it
    assert accelerator.batch_across_requests and accelerator.gain is None


def test_the_operators_max_batch_requests_overrides_the_measured_choice(model_dir):
    with running_server(Settings(model_dir=model_dir, max_batch_requests=3)) as (url, app):
        listed = httpx.get(f"{url}/v1/models", timeout=5).json()[0]
        assert app.state.batcher.requests_per_batch("tiny") == 3
    assert listed["batches_requests"] and listed["batching"] == "--max-batch-requests 3"
