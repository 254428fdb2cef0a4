import io
import json

import numpy as np
import pytest

from rescorer.artifact import save_artifact
from rescorer.cli import main
from rescorer.formats.jsonl import read_jsonl, write_jsonl
from rescorer.sentence_scoring import score_sentences
from tests.nbest_fixtures import tiny_artifact, tiny_utterances


@pytest.fixture()
def lm_dir(tmp_path):
    return save_artifact(tiny_artifact(), tmp_path / "lm")


@pytest.fixture()
def nbest_path(tmp_path):
    buffer = io.StringIO()
    write_jsonl(tiny_utterances(), buffer)
    path = tmp_path / "nbest.jsonl"
    path.write_text(buffer.getvalue())
    return path


def test_score_keeps_keys_and_order_and_writes_negated_natural_log_costs(lm_dir, tmp_path):
    (tmp_path / "text").write_text("b-1 the cat sat\na-1 a dog\nc-1\n")
    assert main(["score", str(lm_dir), str(tmp_path / "text"), str(tmp_path / "costs")]) == 0
    lines = [line.split() for line in (tmp_path / "costs").read_text().splitlines()]
    assert [key for key, _ in lines] == ["b-1", "a-1", "c-1"]
    expected = score_sentences(tiny_artifact(), [["the", "cat", "sat"], ["a", "dog"], []]).log_probs
    np.testing.assert_allclose([float(cost) for _, cost in lines], -expected, atol=1e-5)


def test_rescore_writes_reranked_lists_one_best_and_lm_costs(lm_dir, nbest_path, tmp_path, capsys):
    args = ["rescore", str(lm_dir), str(nbest_path), "--lm-weight", "1", "--interp-weight", "0.5",
            "--out-jsonl", str(tmp_path / "out.jsonl"), "--out-text", str(tmp_path / "best.txt"),
            "--out-trn", str(tmp_path / "best.trn"), "--out-lm-costs", str(tmp_path / "lm_costs")]
    assert main(args) == 0
    assert "WER first pass" in capsys.readouterr().err
    reranked = read_jsonl(tmp_path / "out.jsonl")
    for utt in reranked:
        totals = [h.scores["total"] for h in utt.hyps]
        assert totals == sorted(totals, reverse=True) and [h.extra["rank"] for h in utt.hyps] == [1, 2, 3]
        assert all("nnlm_score" in h.scores for h in utt.hyps)
    best = dict(line.split(" ", 1) for line in (tmp_path / "best.txt").read_text().splitlines())
    assert best == {u.utt_id: u.hyps[0].text for u in reranked}
    keys = [line.split()[0] for line in (tmp_path / "lm_costs").read_text().splitlines()]
    assert keys == ["u1-1", "u1-2", "u1-3", "u2-1", "u2-2", "u2-3"]


def test_eval_tunes_on_dev_and_writes_markdown_json_and_a_png(lm_dir, nbest_path, tmp_path):
    out = tmp_path / "report"
    assert main(["eval", str(lm_dir), "--dev", str(nbest_path), "--test", str(nbest_path), "--out", str(out),
                 "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    (test_set,) = report["sets"]
    assert set(test_set["evaluation"]) >= {"first_pass", "rescored", "oracle", "bootstrap", "gain_share"}
    assert report["tuning"]["method"].startswith("coordinate ascent with exact line searches")
    assert set(report["tuning"]["baselines"]) >= {"first_pass", "acoustic_only", "tuned"}
    assert "| set |" in (out / "report.md").read_text()
    assert (out / "wer_vs_weights.png").read_bytes()[:4] == b"\x89PNG"
    # the tuned weights feed `rescore --weights`
    assert main(["rescore", str(lm_dir), str(nbest_path), "--weights", str(out / "report.json")]) == 0


def test_convert_jsonl_to_kaldi_and_back_keeps_everything(nbest_path, tmp_path):
    assert main(["convert", str(nbest_path), "--to", "kaldi", str(tmp_path / "kaldi")]) == 0
    assert main(["convert", str(tmp_path / "kaldi"), "--ref", str(tmp_path / "kaldi" / "text"),
                 "--to", "jsonl", str(tmp_path / "back.jsonl")]) == 0
    back = read_jsonl(tmp_path / "back.jsonl")
    original = tiny_utterances()
    assert [u.utt_id for u in back] == [u.utt_id for u in original]
    for a, b in zip(back, original, strict=True):
        assert a.ref == b.ref
        assert [(h.text, h.am_score, h.lm_score) for h in a.hyps] == [(h.text, h.am_score, h.lm_score) for h in b.hyps]


def test_bad_inputs_exit_2_with_the_reason(lm_dir, tmp_path, capsys):
    (tmp_path / "bad.jsonl").write_text('{"utt_id": "u", "hyps": []}\n')
    assert main(["rescore", str(lm_dir), str(tmp_path / "bad.jsonl")]) == 2
    assert "has no hypotheses" in capsys.readouterr().err
    assert main(["rescore", str(lm_dir), str(tmp_path / "nbest.unknown")]) == 2
    assert "give --format" in capsys.readouterr().err
    (tmp_path / "refless.jsonl").write_text('{"utt_id": "u", "hyps": [{"text": "a", "am_score": -1}]}\n')
    assert main(["eval", str(lm_dir), "--dev", str(tmp_path / "refless.jsonl"), "--test", str(tmp_path / "refless.jsonl"),
                 "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    assert "has no reference" in capsys.readouterr().err


def test_wer_command_prints_kaldi_style_lines(tmp_path, capsys):
    (tmp_path / "ref").write_text("a x y z\nb p q\n")
    (tmp_path / "hyp").write_text("a x y\nb p q r\n")
    assert main(["wer", str(tmp_path / "ref"), str(tmp_path / "hyp")]) == 0
    out = capsys.readouterr().out
    assert "%WER 40.00 [ 2 / 5, 1 ins, 1 del, 0 sub ]" in out and "%SER 100.00 [ 2 / 2 ]" in out
    (tmp_path / "hyp").write_text("a x y\n")
    assert main(["wer", str(tmp_path / "ref"), str(tmp_path / "hyp")]) == 2


def test_rescore_with_costs_computed_before_equals_scoring_and_checks_the_keys(lm_dir, nbest_path, tmp_path, capsys):
    kaldi = tmp_path / "kaldi"
    assert main(["convert", str(nbest_path), "--to", "kaldi", str(kaldi)]) == 0
    assert main(["score", str(lm_dir), str(kaldi / "words_text"), str(tmp_path / "costs")]) == 0
    assert main(["rescore", str(lm_dir), str(kaldi), "--out-jsonl", str(tmp_path / "scored.jsonl")]) == 0
    assert main(["rescore", str(lm_dir), str(kaldi), "--nnlm-costs", str(tmp_path / "costs"),
                 "--out-jsonl", str(tmp_path / "given.jsonl")]) == 0
    scored = [json.loads(line) for line in (tmp_path / "scored.jsonl").read_text().splitlines()]
    given = [json.loads(line) for line in (tmp_path / "given.jsonl").read_text().splitlines()]
    assert [[h["text"] for h in u["hyps"]] for u in given] == [[h["text"] for h in u["hyps"]] for u in scored]
    for a, b in zip(scored, given, strict=True):
        assert [h["nnlm_score"] for h in b["hyps"]] == pytest.approx([h["nnlm_score"] for h in a["hyps"]], abs=1e-5)
    capsys.readouterr()
    lines = (tmp_path / "costs").read_text().splitlines()
    (tmp_path / "short").write_text("\n".join(lines[1:]) + "\n")
    assert main(["rescore", str(lm_dir), str(kaldi), "--nnlm-costs", str(tmp_path / "short")]) == 2
    assert f"no cost for hypothesis {lines[0].split()[0]!r}" in capsys.readouterr().err
    (tmp_path / "long").write_text("\n".join([*lines, "zz-1 3.0"]) + "\n")
    assert main(["rescore", str(lm_dir), str(kaldi), "--nnlm-costs", str(tmp_path / "long")]) == 2
    assert "'zz-1', which is not a hypothesis" in capsys.readouterr().err


def test_weights_tuned_worse_than_the_first_pass_are_refused_where_they_would_be_applied(lm_dir, tmp_path, capsys):
    from rescorer.nbest import Hypothesis, Utterance

    # the first hypothesis is the reference, and every score prefers the second (same length,
    # words the LM does not know): no weights can reach the first pass's choice
    utterances = [Utterance(f"u{i}", [Hypothesis("zq xv", -9.0, -9.0), Hypothesis("zq xw", -1.0, -1.0)], "zq xv")
                  for i in range(4)]
    buffer = io.StringIO()
    write_jsonl(utterances, buffer)
    lists = tmp_path / "lists.jsonl"
    lists.write_text(buffer.getvalue())
    out = tmp_path / "report"
    assert main(["eval", str(lm_dir), "--dev", str(lists), "--test", str(lists), "--out", str(out), "--no-progress"]) == 0
    assert "MORE dev errors than the first pass" in capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["tuning"]["worse_than_first_pass"] == {"tuned_errors": 4, "first_pass_errors": 0}
    for command in (["rescore", str(lm_dir), str(lists)], ["set-weights", str(lm_dir)]):
        assert main([*command, "--weights", str(out / "report.json")]) == 2
        assert "more dev errors than the first pass (4 against 0" in capsys.readouterr().err
    assert main(["set-weights", str(lm_dir), "--weights", str(out / "report.json"), "--accept-worse-weights"]) == 0
    assert "accepted although worse" in capsys.readouterr().err
    stored = json.loads((lm_dir / "config.json").read_text())["provenance"]["rescoring_weights"]
    assert "accepted although worse than the first pass on dev (4 against 0 dev errors)" in stored["tuned_by"]
