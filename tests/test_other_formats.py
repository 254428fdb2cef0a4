import json

import pytest

from rescorer.formats.espnet import read_espnet_decode_dir
from rescorer.formats.hyporadise import read_hyporadise
from rescorer.formats.reader import NbestSource, read_nbest
from rescorer.formats.trn import read_trn, write_trn
from rescorer.nbest import NbestError
from tests.conftest import shared_data


def _espnet_dir(tmp_path, hyps: dict[int, dict[str, tuple[str, float, float, float]]]):
    for k, entries in hyps.items():
        d = tmp_path / f"{k}best_recog"
        d.mkdir(parents=True)
        (d / "text").write_text("".join(f"{u} {t}\n" for u, (t, *_ ) in entries.items()))
        (d / "scores").write_text("".join(
            f'{u} {{"decoder": "tensor({dec})", "ctc": "tensor({ctc})", "lm": "tensor({lm})"}}\n'
            for u, (_, dec, ctc, lm) in entries.items()))
        (d / "score").write_text("".join(f"{u} tensor(-1.0)\n" for u in entries))
    return tmp_path


def test_espnet_decode_dirs_give_ordered_lists_with_mapped_scores(tmp_path):
    root = _espnet_dir(tmp_path, {1: {"u1": ("A B", -1.0, -2.0, -3.0)}, 2: {"u1": ("A C", -2.0, -2.0, -4.0)}})
    (utt,) = read_espnet_decode_dir(root)
    assert [h.text for h in utt.hyps] == ["A B", "A C"] and utt.ref is None
    assert utt.hyps[0].am_score == pytest.approx(-1.4) and utt.hyps[0].lm_score == -3.0
    assert utt.hyps[0].scores["score"] == -1.0


def test_espnet_gaps_and_missing_references_are_errors(tmp_path):
    root = _espnet_dir(tmp_path, {1: {"u1": ("A", -1, -1, -1)}, 2: {"u2": ("B", -1, -1, -1)}})
    with pytest.raises(NbestError, match="'u2' has a 2-best but no 1-best"):
        read_espnet_decode_dir(root)
    (tmp_path / "ref.trn").write_text("A (u9)\n")
    with pytest.raises(NbestError, match="ref.trn: no reference for utterance 'u1'"):
        read_nbest(NbestSource(str(_espnet_dir(tmp_path / "x", {1: {"u1": ("A", -1, -1, -1)}})), "espnet",
                               ref=str(tmp_path / "ref.trn")))


def test_hyporadise_lists_with_and_without_scores(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps([{"id": "a", "input": ["x y", "x"], "output": "x y", "am_score": [-0.1, -0.2]}]))
    (tmp_path / "n.json").write_text(json.dumps([{"input": ["x"], "output": "x"}]))
    (scored,) = read_hyporadise(tmp_path / "s.json")
    (unscored,) = read_hyporadise(tmp_path / "n.json")
    assert [h.am_score for h in scored.hyps] == [-0.1, -0.2] and scored.extra == {"scored": True}
    assert unscored.hyps[0].am_score == 0.0 and unscored.extra == {"scored": False} and unscored.utt_id == "utt000000"
    (tmp_path / "bad.json").write_text(json.dumps([{"input": ["x", "y"], "score": [1.0]}]))
    with pytest.raises(NbestError, match="must be a list of 2 numbers"):
        read_hyporadise(tmp_path / "bad.json")


def test_trn_round_trip(tmp_path):
    with (tmp_path / "a.trn").open("w") as f:
        write_trn([("s-1", "A B"), ("s-2", "")], f)
    assert read_trn(tmp_path / "a.trn") == {"s-1": "A B", "s-2": ""}


@pytest.mark.slow
def test_real_espnet_decode_dir_matches_the_derived_jsonl(tmp_path):
    import tarfile

    from rescorer.formats.jsonl import read_jsonl
    from rescorer.formats.score_mapping import LIBRISPEECH_ESPNET

    with tarfile.open(shared_data("librispeech-espnet2-hubert-30best/raw/dev_clean.tar.gz")) as tar:
        tar.extractall(tmp_path, filter="data")
    from_dir = read_espnet_decode_dir(next(tmp_path.iterdir()))
    from_jsonl = read_jsonl(shared_data("librispeech-espnet2-hubert-30best/nbest/dev_clean.jsonl.gz"), LIBRISPEECH_ESPNET)
    assert [u.utt_id for u in from_dir] == [u.utt_id for u in from_jsonl]
    for a, b in zip(from_dir, from_jsonl, strict=True):
        assert [h.text for h in a.hyps] == [h.text for h in b.hyps]
        assert [h.am_score for h in a.hyps] == pytest.approx([h.am_score for h in b.hyps], abs=1e-3)
