"""Bad input is one message naming the input, never a traceback or a wrong answer (hardening)."""

import gzip
import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from rescorer.cli import main as rescorer_cli
from rescorer.formats.jsonl import read_jsonl
from rescorer.formats.reader import NbestSource, read_nbest
from rescorer.formats.text_files import open_text, parse_keyed_lines, read_keyed_lines, split_lines
from rescorer.nbest import NbestError
from server.cli import main as server_cli
from server.settings import Settings
from tests.server_harness import running_server
from tests.test_server import model_dir  # noqa: F401  (the tiny artifact fixture)

ODD_SEPARATORS = ["\u2028", "\u0085", "\x0b", "\x0c", "\x1c", "\r"]


def test_a_line_ends_at_newline_only_and_fields_split_on_ascii_whitespace():
    for odd in ODD_SEPARATORS:
        text = f"k1 one{odd}child\nk2 a\n"
        keys, sentences = parse_keyed_lines(split_lines(text), "t")
        assert keys == ["k1", "k2"], repr(odd)
        ascii_space = odd in ("\x0b", "\x0c", "\r")
        assert sentences[0] == (["one", "child"] if ascii_space else [f"one{odd}child"])
    keys, sentences = parse_keyed_lines(split_lines("k1\tone\ttwo\r\nk2  a\n"), "t")
    assert keys == ["k1", "k2"] and sentences == [["one", "two"], ["a"]]
    with pytest.raises(NbestError, match="t:2: empty line"):
        parse_keyed_lines(split_lines("k1 a\n \nk3 b\n"), "t")


def test_tab_separated_kaldi_files_are_read_by_key(tmp_path):
    text = tmp_path / "text"
    text.write_text("demo-00000\tone child waters\ndemo-00001 \t a\n")
    assert read_keyed_lines(text) == {"demo-00000": "one child waters", "demo-00001": "a"}


def test_the_service_and_the_cli_give_one_line_out_per_line_in(model_dir, tmp_path):  # noqa: F811
    body = "k1 the cat\u2028sat\nk2 a dog\n".encode()
    text = tmp_path / "text"
    text.write_bytes(body)
    assert rescorer_cli(["score", str(model_dir / "tiny"), str(text), str(tmp_path / "costs")]) == 0
    cli = (tmp_path / "costs").read_text().split()
    with running_server(Settings(model_dir=model_dir)) as (url, _):
        served = httpx.post(f"{url}/v1/score/kaldi", content=body, timeout=10)
        blank = httpx.post(f"{url}/v1/score/kaldi", content=b"k1 a\n\nk2 b\n", timeout=10)
    assert served.status_code == 200
    assert served.text.split()[0::2] == cli[0::2] == ["k1", "k2"]
    np.testing.assert_allclose([float(c) for c in served.text.split()[1::2]], [float(c) for c in cli[1::2]], atol=1e-4)
    assert blank.status_code == 422 and "body:2: empty line" in blank.text


def test_a_bad_byte_is_reported_on_its_own_line_past_the_first_block(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"".join(b"k%d " % i + b"word " * 400 + b"\n" for i in range(14)) + b"k14 bad \xff\n")
    with pytest.raises(NbestError, match=r"a\.txt:15: not UTF-8"), open_text(path) as f:
        list(f)
    with pytest.raises(NbestError, match=r"a\.txt:15: not UTF-8"), open_text(path) as f:
        f.read()


@pytest.mark.parametrize("damage", ["truncate", "corrupt"])
def test_truncated_or_corrupt_gzip_is_an_input_error(tmp_path, damage):
    path = tmp_path / "lists.jsonl.gz"
    data = gzip.compress(b"".join(json.dumps({"utt_id": f"u{i}", "hyps": [{"text": "a b"}]}).encode() + b"\n"
                                  for i in range(500)))
    data = data[: len(data) // 2] if damage == "truncate" else data[:20] + bytes(b ^ 0xFF for b in data[20:60]) + data[60:]
    path.write_bytes(data)
    with pytest.raises(NbestError, match="gzip"):
        read_jsonl(path)
    assert rescorer_cli(["convert", str(path), "--to", "jsonl", str(tmp_path / "out.jsonl")]) == 2
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize("name, fmt", [("deep.jsonl", "jsonl"), ("deep.json", "hyporadise")])
def test_json_nested_100000_deep_is_an_input_error(tmp_path, name, fmt):
    path = tmp_path / name
    path.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(NbestError, match="nested too deeply"):
        read_nbest(NbestSource(str(path), fmt))


def test_reading_a_directory_or_a_symlink_loop_names_the_file(tmp_path):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(NbestError, match="cannot read"):
        open_text(tmp_path / "loop")
    with pytest.raises(NbestError, match="is a directory"):
        open_text(tmp_path)


def test_the_server_refuses_a_tampered_artifact_or_an_empty_token_in_one_line(model_dir, tmp_path, capsys):  # noqa: F811
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(model_dir / "tiny", bad)
    config = json.loads((bad / "config.json").read_text())
    config["log_z"] = None
    (bad / "config.json").write_text(json.dumps(config))
    assert server_cli(["--model-dir", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "'log_z'" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert server_cli(["--model-dir", str(model_dir), "--token", ""]) == 2
    err = capsys.readouterr().err
    assert "token" in err and "Traceback" not in err
    with pytest.raises(ValueError, match="empty token"):
        Settings(model_dir=model_dir, token="  ")


@pytest.mark.parametrize("argv", [["info", ""], ["score", "{lm}", "", "costs"], ["score", "{lm}", "text", " "],
                                  ["eval", "{lm}", "--dev", "x", "--test", "x", "--out", ""],
                                  ["rescore", "{lm}", "", "--out-jsonl", "o.jsonl"], ["wer", "text", ""]])
def test_an_empty_argument_is_refused_by_name_and_never_read_as_the_working_directory(
        model_dir, tmp_path, capsys, monkeypatch, argv):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    (tmp_path / "text").write_text("u1 the cat\n")
    with pytest.raises(SystemExit) as stop:
        rescorer_cli([a.format(lm=model_dir / "tiny") for a in argv])
    assert stop.value.code == 2 and "an empty value" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["text"]


def test_an_empty_host_or_model_dir_is_refused_not_every_interface_or_the_working_directory(model_dir, capsys):  # noqa: F811
    with pytest.raises(ValueError, match="empty host would bind every interface"):
        Settings(model_dir=model_dir, host=" ")
    assert server_cli(["--model-dir", str(model_dir), "--host", ""]) == 2
    assert "empty host" in capsys.readouterr().err
    assert server_cli(["--model-dir", ""]) == 2
    assert "model_dir" in capsys.readouterr().err
    assert Settings(model_dir=model_dir, host="0.0.0.0").host == "0.0.0.0"  # every interface when named


def test_a_missing_artifact_is_named_missing_and_a_file_is_not_a_directory(tmp_path, capsys):
    assert rescorer_cli(["info", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: no such artifact directory" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert rescorer_cli(["info", str(tmp_path / "file")]) == 2
    assert "file: not a directory (expected an artifact directory)" in capsys.readouterr().err


def test_a_line_or_a_whole_file_past_its_memory_bound_is_refused_by_name_not_read_until_memory_runs_out(
        tmp_path, monkeypatch):
    import rescorer.bounded_read as bounded_read
    from training.corpus import CorpusError, iter_sentences

    monkeypatch.setattr(bounded_read, "MAX_LINE_BYTES", 100)
    monkeypatch.setattr(bounded_read, "MAX_WHOLE_FILE_BYTES", 1000)
    path = tmp_path / "long.txt"
    path.write_bytes(b"u1 " + b"w " * 48 + b"\n" + b"u2 " + b"\x00" * 500)  # line 1 fits, line 2 has no end
    with pytest.raises(NbestError, match=r"long\.txt:2: a line longer than"):
        list(open_text(path))
    with pytest.raises(CorpusError, match=r"long\.txt:2: a line longer than"):
        list(iter_sentences(path))
    assert open_text(path).read().startswith("u1 w")  # 603 bytes: within the whole-file bound
    path.write_bytes(b"x\n" * 600)
    with pytest.raises(NbestError, match="larger than"):
        open_text(path).read()
    assert len(list(open_text(path))) == 600  # many short lines are fine


def test_every_file_read_whole_is_bounded_and_an_artifact_file_that_never_ends_is_refused(
        model_dir, tmp_path, monkeypatch, capsys):  # noqa: F811
    import shutil

    import rescorer.bounded_read as bounded_read
    from rescorer.artifact import ArtifactError, load_artifact
    from rescorer.vocab import VocabularyError, read_symbol_table

    monkeypatch.setattr(bounded_read, "MAX_WHOLE_FILE_BYTES", 1000)
    big = tmp_path / "big"
    big.write_text('{"lm_weight": 0.5}'.ljust(1001))  # valid weights and a valid symbol table line, past the bound
    with pytest.raises(VocabularyError, match="larger than 1,000 bytes, the most read whole"):
        read_symbol_table(big)
    lists = tmp_path / "l.jsonl"
    lists.write_text(json.dumps(MISSING_LM | {"hyps": MISSING_LM["hyps"][:1]}) + "\n")
    assert rescorer_cli(["rescore", str(model_dir / "tiny"), str(lists), "--weights", str(big)]) == 2
    err = capsys.readouterr().err
    assert "cannot read the weights" in err and "larger than 1,000 bytes" in err
    artifact = tmp_path / "lm"
    shutil.copytree(model_dir / "tiny", artifact)
    (artifact / "config.json").write_text((artifact / "config.json").read_text() + " " * 1000)
    with pytest.raises(ArtifactError, match=r"config\.json: cannot read \(larger than"):
        load_artifact(artifact)
    monkeypatch.undo()
    shutil.rmtree(artifact)
    shutil.copytree(model_dir / "tiny", artifact)
    import rescorer.artifact as artifact_module  # words.txt past its bound (a 5-byte one), after its hash matched

    real = bounded_read.read_text_bounded
    monkeypatch.setattr(artifact_module, "read_text_bounded",
                        lambda path, limit=None: real(path, 5 if Path(path).name == "words.txt" else limit))
    with pytest.raises(ArtifactError, match=r"words\.txt: cannot read \(larger than 5 bytes"):
        load_artifact(artifact)
    monkeypatch.undo()
    (artifact / "words.txt").unlink()
    (artifact / "words.txt").symlink_to("/dev/zero")  # hashing it would never end
    with pytest.raises(ArtifactError, match="words.txt: not a regular file"):
        load_artifact(artifact)


MISSING_LM = {"utt_id": "m", "hyps": [{"text": "the cat sat on the mat", "am_score": 0, "lm_score": -50},
                                      {"text": "zzz qqq", "am_score": -5}]}


def test_a_score_that_some_hypotheses_lack_is_refused_not_counted_as_zero(model_dir, tmp_path):  # noqa: F811
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(MISSING_LM) + "\n")
    with pytest.raises(NbestError, match="lm_score given for 1 of 2 hypotheses"):
        read_jsonl(path)
    with running_server(Settings(model_dir=model_dir)) as (url, _):
        response = httpx.post(f"{url}/v1/rescore", json={"utterances": [MISSING_LM]}, timeout=10)
        assert response.status_code == 422 and "lm_score given for 1 of 2" in response.text
        # the readers' other list rule: an id once (every reader refuses a repeated one; the
        # service answered both, the second under the same id)
        twice = {"utt_id": "a", "hyps": [{"text": "the cat", "am_score": -1.0}]}
        response = httpx.post(f"{url}/v1/rescore", json={"utterances": [twice, {**twice, "utt_id": "b"}, twice]}, timeout=10)
    assert response.status_code == 422, response.text
    error = response.json()["detail"][0]
    assert error["loc"] == ["body", "utterances", 2, "utt_id"] and "appears twice (first at utterances[0])" in error["msg"]
    path.write_text(json.dumps(twice) + "\n" + json.dumps(twice) + "\n")
    with pytest.raises(NbestError, match="appears twice"):
        read_jsonl(path)


@pytest.mark.parametrize("hyp, weights", [
    ({"text": "a", "am_score": 1e308}, {"am_weight": 10}),  # was a 200 with null totals
    ({"text": "a", "am_score": -1.0}, {"am_weight": 1e300}),
    ({"text": "a", "am_score": True}, None),  # the JSONL reader's rule: numbers only
    ({"text": "a", "am_score": "-1.5"}, None),
    ({"text": "a", "am_score": -1.0}, {"lm_weight": "2"}),
])
def test_scores_and_weights_are_strict_finite_numbers_within_bounds(model_dir, hyp, weights):  # noqa: F811
    body = {"utterances": [{"utt_id": "u", "hyps": [hyp]}]}
    if weights:
        body["weights"] = weights
    with running_server(Settings(model_dir=model_dir)) as (url, _):
        response = httpx.post(f"{url}/v1/rescore", json=body, timeout=10)
    assert response.status_code == 422, response.text


def test_the_jsonl_reader_takes_json_numbers_only(tmp_path):
    for value in ('"-1.5"', "true", "1e400"):
        path = tmp_path / "s.jsonl"
        path.write_text('{"utt_id": "u", "hyps": [{"text": "a", "am_score": ' + value + "}]}\n")
        with pytest.raises(NbestError, match="am_score"):
            read_jsonl(path)


def test_the_token_is_checked_before_the_body_is_read(model_dir):  # noqa: F811
    with running_server(Settings(model_dir=model_dir, token="s3cret")) as (url, _):
        malformed = httpx.post(f"{url}/v1/rescore", content=b"{not json", timeout=10)
        deep = httpx.post(f"{url}/v1/rescore", content=b"[" * 50_000, timeout=10,
                          headers={"content-type": "application/json"})
        empty_bearer = httpx.post(f"{url}/v1/rescore", content=b"{}", headers={"authorization": "Bearer"}, timeout=10)
        right = httpx.post(f"{url}/v1/rescore", content=b"{not json", timeout=10,
                           headers={"authorization": "Bearer s3cret", "content-type": "application/json"})
        metrics = httpx.get(f"{url}/metrics", headers={"authorization": "Bearer s3cret"}, timeout=10).text
    assert malformed.status_code == deep.status_code == empty_bearer.status_code == 401
    assert malformed.headers["www-authenticate"] == "Bearer"
    assert right.status_code == 422
    assert 'status="401"' in metrics


def test_empty_inputs_and_overlong_numbers_name_the_file(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(NbestError, match=r"empty\.jsonl: no utterances"):
        read_nbest(NbestSource(str(empty)))
    (tmp_path / "kaldi").mkdir()
    with pytest.raises(NbestError, match="kaldi"):
        read_nbest(NbestSource(str(tmp_path / "kaldi"), "kaldi"))
    long = tmp_path / "long.jsonl"
    long.write_text('{"utt_id": "u", "hyps": [{"text": "a", "am_score": ' + "9" * 5000 + "}]}\n")
    with pytest.raises(NbestError, match=r"long\.jsonl:1: not valid JSON"):
        read_jsonl(long)


def test_outputs_a_device_in_place_and_unwritable_paths_as_one_error(model_dir, tmp_path, capsys):  # noqa: F811
    import stat

    from training.cli import main as train_cli

    text = tmp_path / "text"
    text.write_text("k1 the cat\n")
    tiny = str(model_dir / "tiny")
    assert rescorer_cli(["score", tiny, str(text), "/dev/null"]) == 0
    assert stat.S_ISCHR(__import__("os").stat("/dev/null").st_mode)  # written to, not replaced
    for bad in ("/proc/version", str(tmp_path)):
        assert rescorer_cli(["score", tiny, str(text), bad]) == 2
        err = capsys.readouterr().err
        assert bad in err and "Traceback" not in err
    existing = tmp_path / "a-file"
    existing.write_text("x")
    assert train_cli(["train", "--train", str(text), "--dev", str(text), "--out", str(existing), "--no-progress"]) == 2
    assert "is not a directory" in capsys.readouterr().err and existing.read_text() == "x"


def test_a_long_reference_is_refused_before_any_work_and_a_request_at_the_limits_is_fast(model_dir):  # noqa: F811
    import time

    settings = Settings(model_dir=model_dir, max_words_per_ref=1000, max_alignment_cells=4_000_000)
    hyp = " ".join(["the cat sat"] * 66)  # 198 words
    ten_thousand = " ".join(["a"] * 10_000)
    with running_server(settings) as (url, _):
        too_long = httpx.post(f"{url}/v1/rescore", timeout=30, json={"utterances": [
            {"utt_id": f"u{i}", "hyps": [{"text": hyp, "am_score": -1.0}], "ref": ten_thousand} for i in range(40)]})
        # at the limits: 1000-word refs (each its own, so no alignment is reused), 198-word
        # hypotheses, as many utterances as the cell budget (|ref| x |hyp| per hypothesis) allows
        n = settings.max_alignment_cells // (1000 * 198)

        def request(utterances: int) -> dict:
            return {"utterances": [{"utt_id": f"u{i}", "hyps": [{"text": hyp, "am_score": -1.0}],
                                    "ref": " ".join(["a"] * 999 + [f"w{i}"])} for i in range(utterances)]}

        start = time.perf_counter()
        at_limits = httpx.post(f"{url}/v1/rescore", timeout=60, json=request(n))
        seconds = time.perf_counter() - start
        one_past = httpx.post(f"{url}/v1/rescore", timeout=30, json=request(n + 1))
    assert too_long.status_code == 422 and "ref" in too_long.text
    assert at_limits.status_code == 200 and seconds < settings.request_timeout_s
    assert one_past.status_code == 422 and "alignment" in one_past.text


def test_slow_clients_are_dropped_and_do_not_hold_the_service(model_dir):  # noqa: F811
    import socket
    import time

    settings = Settings(model_dir=model_dir, request_read_timeout_s=1.0, max_connections=64)
    with running_server(settings) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        stalled = []
        for _ in range(40):  # half a header each, then nothing
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Len")
            stalled.append(s)
        body_staller = socket.create_connection(("127.0.0.1", port), timeout=5)  # a body that stops
        body_staller.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 100\r\n\r\n{\"sentences\": [")
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200  # still serving meanwhile
        start = time.perf_counter()
        for s in stalled + [body_staller]:
            s.settimeout(5)  # the server must close it before this: recv then returns b""
            while s.recv(1024):
                pass
            s.close()
        dropped_after = time.perf_counter() - start
        ok = httpx.post(f"{url}/v1/score", json={"sentences": ["the cat"]}, timeout=10)
    assert dropped_after < 4.0  # closed by the server about 1 s after they stalled, not held
    assert ok.status_code == 200


def test_connections_beyond_the_limit_are_answered_503(model_dir):  # noqa: F811
    import socket

    settings = Settings(model_dir=model_dir, request_read_timeout_s=5.0, max_connections=4)
    with running_server(settings) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(4)]
        for s in held:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # incomplete: the connection stays open
        over = httpx.get(f"{url}/healthz", timeout=5)
        for s in held:
            s.close()
    assert over.status_code == 503


def test_no_atomic_writer_replaces_a_device():
    import stat

    from rescorer.atomic import write_text_atomic
    from rescorer.errors import OutputError

    with pytest.raises(OutputError, match="not a regular file"):
        write_text_atomic("/dev/null", "x")
    assert stat.S_ISCHR(__import__("os").stat("/dev/null").st_mode)


@pytest.mark.parametrize("content, message", [
    ("not json", "cannot read the weights"),
    ("[1, 2]", "expected an object of weights"),
    ('{"lm_wieght": 0.5}', "unknown weight 'lm_wieght'"),
    ('{"lm_weight": "0.5"}', "'lm_weight' must be a number"),
    ('{"lm_weight": NaN}', "'lm_weight' must be a number"),
    ('{"weights": {"word_penalty": 1e300}}', "'word_penalty' must be a number within"),
    ('{"weights": {"am_weight": true}}', "'am_weight' must be a number"),
])
def test_a_bad_weights_file_is_one_input_error(tmp_path, capsys, content, message):
    from rescorer.artifact import save_artifact
    from tests.nbest_fixtures import tiny_artifact

    lm = save_artifact(tiny_artifact(), tmp_path / "lm")
    (tmp_path / "w.json").write_text(content)
    (tmp_path / "n.jsonl").write_text('{"utt_id": "u", "hyps": [{"text": "the cat", "am_score": -1}]}\n')
    code = rescorer_cli(["rescore", str(lm), str(tmp_path / "n.jsonl"), "--weights", str(tmp_path / "w.json"),
                         "--out-jsonl", str(tmp_path / "out.jsonl")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err and not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize("command", ["score", "rescore"])
def test_a_token_budget_below_one_is_an_input_error_and_nothing_is_written(model_dir, tmp_path, capsys, command):  # noqa: F811
    text, nbest, out = tmp_path / "text", tmp_path / "n.jsonl", tmp_path / "out"
    text.write_text("k1 the cat\n")
    nbest.write_text(json.dumps({"utt_id": "u", "hyps": [{"text": "the cat", "am_score": -1.0}]}) + "\n")
    args = ([str(text), str(out)] if command == "score" else [str(nbest), "--out-jsonl", str(out)])
    assert rescorer_cli([command, str(model_dir / "tiny"), *args, "--max-tokens", "0"]) == 2
    err = capsys.readouterr().err
    assert "max_tokens must be a whole number >= 1" in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize(("flag", "value", "expected"), [
    ("--request-timeout-s", "inf", "finite"), ("--request-timeout-s", "1e300", "less than or equal"),
    ("--request-read-timeout-s", "nan", "request_read_timeout_s"), ("--max-delay-ms", "inf", "finite"),
    ("--telemetry-share", "inf", "finite"), ("--telemetry-share", "2", "less than or equal to 1"),
    ("--word-penalty", "-inf", "finite"),
])
def test_every_number_the_server_takes_is_finite_and_bounded(model_dir, capsys, flag, value, expected):  # noqa: F811
    # an infinite timeout passed 'greater than 0' and crashed the CLI with OverflowError
    assert server_cli(["--model-dir", str(model_dir), f"{flag}={value}"]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_an_output_under_a_file_is_one_line_for_every_command_that_writes(model_dir, tmp_path, capsys):  # noqa: F811
    from training.cli import main as train_cli

    tiny = str(model_dir / "tiny")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    nbest, text = tmp_path / "n.jsonl", tmp_path / "text"
    nbest.write_text(json.dumps({"utt_id": "u", "ref": "the cat", "hyps": [{"text": "the cat", "am_score": -1.0}]}) + "\n")
    text.write_text("the cat\n")
    under = str(blocker / "out")
    commands = [
        (rescorer_cli, ["eval", tiny, "--dev", str(nbest), "--test", str(nbest), "--out", under, "--no-progress"]),
        (rescorer_cli, ["rescore", tiny, str(nbest), "--out-jsonl", under]),
        (rescorer_cli, ["convert", str(nbest), "--to", "kaldi", under]),
        (train_cli, ["evaluate", tiny, str(text), "--json", under]),
        (train_cli, ["train", "--train", str(text), "--dev", str(text), "--out", under]),
        (train_cli, ["train", "--train", str(text), "--dev", str(text), "--out", str(tmp_path / "run"),
                     "--vocab", under]),  # an input path under a file
    ]
    for cli, argv in commands:
        assert cli(argv) == 2, argv
        err = capsys.readouterr().err
        assert str(blocker) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert not (tmp_path / "run").exists()


def test_an_input_of_the_wrong_kind_is_one_line_for_every_option_that_reads_one(model_dir, tmp_path, capsys):  # noqa: F811
    tiny = str(model_dir / "tiny")
    a_dir = tmp_path / "a-dir"
    a_dir.mkdir()
    nbest = tmp_path / "n.jsonl"
    nbest.write_text(json.dumps({"utt_id": "u", "hyps": [{"text": "the cat", "am_score": -1.0}]}) + "\n")
    cases = [
        (["--nnlm-costs", str(a_dir)], "is a directory"),  # was IsADirectoryError
        (["--nnlm-costs", str(tmp_path / "missing")], "not found"),
        (["--ref", str(a_dir)], "is a directory"),
        (["--weights", str(a_dir)], "cannot read the weights"),
        (["--format", "kaldi"], "not a directory (expected a Kaldi N-best directory"),  # was NotADirectoryError
    ]
    for extra, expected in cases:
        assert rescorer_cli(["rescore", tiny, str(nbest), *extra]) == 2, extra
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, (extra, err)


@pytest.mark.parametrize(("utt_id", "to", "expected"), [
    ("u 1", "kaldi", "cannot be a Kaldi key"),  # was written, and read back as key 'u' with '1' in its text
    ("u\t1", "kaldi", "cannot be a Kaldi key"),
    ("u (1)", "trn", "cannot be an sclite trn id"),  # was written, and refused by the trn reader
    ("u(1)", "trn", "cannot be an sclite trn id"),
])
def test_an_id_an_output_format_cannot_hold_is_refused_before_anything_is_written(
        model_dir, tmp_path, capsys, utt_id, to, expected):  # noqa: F811
    nbest = tmp_path / "n.jsonl"
    nbest.write_text(json.dumps({"utt_id": utt_id, "ref": "the cat", "hyps": [{"text": "the cat", "am_score": -1.0}]})
                     + "\n")
    out, jsonl = tmp_path / "out", tmp_path / "out.jsonl"
    assert rescorer_cli(["convert", str(nbest), "--to", to, str(out)]) == 2
    assert expected in capsys.readouterr().err and not out.exists()
    option = "--out-text" if to == "kaldi" else "--out-trn"
    assert rescorer_cli(["rescore", str(model_dir / "tiny"), str(nbest), "--out-jsonl", str(jsonl), option, str(out)]) == 2
    assert expected in capsys.readouterr().err and not out.exists() and not jsonl.exists()


def test_ids_the_writers_accept_are_read_back_unchanged(tmp_path):
    from rescorer.formats.kaldi import write_kaldi_text
    from rescorer.formats.text_files import read_keyed_lines
    from rescorer.formats.trn import read_trn, write_trn

    texts = [("spk-1_utt.2", "the cat"), ("a\u00e9\u4e2d", "a b"), ("x[1]", "")]
    with (tmp_path / "text").open("w", encoding="utf-8") as f:
        write_kaldi_text(texts, f)
    with (tmp_path / "t.trn").open("w", encoding="utf-8") as f:
        write_trn(texts, f)
    assert read_trn(tmp_path / "t.trn") == dict(texts)
    assert read_keyed_lines(tmp_path / "text") == dict(texts)


def test_eval_checks_every_list_before_scoring_names_the_file_and_leaves_no_report_directory(
        model_dir, tmp_path, capsys, monkeypatch):  # noqa: F811
    import rescorer.eval_command as eval_command

    good, noref = tmp_path / "good.jsonl", tmp_path / "noref.jsonl"
    good.write_text(json.dumps({"utt_id": "u", "ref": "the cat", "hyps": [{"text": "the cat", "am_score": -1.0}]}) + "\n")
    noref.write_text(json.dumps({"utt_id": "u", "hyps": [{"text": "the cat", "am_score": -1.0}]}) + "\n")
    scored = []
    real_score_nbest = eval_command.score_nbest
    monkeypatch.setattr(eval_command, "score_nbest", lambda *a, **k: scored.append(1) or real_score_nbest(*a, **k))
    out = tmp_path / "report"
    argv = ["eval", str(model_dir / "tiny"), "--dev", str(good), "--test", str(noref), "--out", str(out), "--no-progress"]
    assert rescorer_cli(argv) == 2
    err = capsys.readouterr().err
    assert f"{noref}: utterance 'u' has no reference" in err and "Traceback" not in err
    assert scored == [] and not out.exists()  # found before the dev list was scored; no empty report directory
    argv[argv.index(str(noref))] = str(good)
    assert rescorer_cli(argv) == 0 and (out / "report.json").exists() and len(scored) == 2
