import struct

import kaldiio
import numpy as np
import pytest

from rescorer.formats.kaldi import (
    read_compact_lattice_nbest,
    read_cost_archive,
    read_kaldi_nbest,
    read_kaldi_text,
    read_words_archive,
)
from rescorer.formats.reader import NbestSource, attach_references, read_nbest
from rescorer.nbest import NbestError
from rescorer.vocab import parse_symbol_table
from tests.conftest import shared_data

SYMBOLS = parse_symbol_table("<eps> 0\nthe 1\ncat 2\nsat 3\n<unk> 4\n", "words.txt")


def _binary_float_archive(costs: dict[str, float]) -> bytes:
    """Kaldi's binary BaseFloat archive: `key \\0B\\4<float32>` per record."""
    return b"".join(k.encode() + b" \0B\x04" + struct.pack("<f", v) for k, v in costs.items())


def test_text_and_binary_cost_archives_read_the_same(tmp_path):
    costs = {"u1-1": 12.5, "u1-2": -3.25, "u2-1": 0.0}
    (tmp_path / "c.txt").write_text("".join(f"{k} {v}\n" for k, v in costs.items()))
    (tmp_path / "c.ark").write_bytes(_binary_float_archive(costs))
    assert read_cost_archive(tmp_path / "c.txt") == costs
    assert read_cost_archive(tmp_path / "c.ark") == costs


def test_binary_int32_word_archives_written_by_kaldiio_are_read_with_the_symbol_table(tmp_path):
    kaldiio.save_ark(str(tmp_path / "w.ark"), {"u1-1": np.array([1, 2, 3], dtype=np.int32),
                                                "u1-2": np.array([], dtype=np.int32)})
    assert read_words_archive(tmp_path / "w.ark", SYMBOLS) == {"u1-1": ["the", "cat", "sat"], "u1-2": []}


def test_integer_text_words_need_the_symbol_table_and_unknown_ids_are_errors(tmp_path):
    (tmp_path / "w.txt").write_text("u1-1 1 2 3\n")
    assert read_words_archive(tmp_path / "w.txt", SYMBOLS) == {"u1-1": ["the", "cat", "sat"]}
    (tmp_path / "bad.txt").write_text("u1-1 1 99\n")
    with pytest.raises(NbestError, match="word id 99 is not in the symbol table"):
        read_words_archive(tmp_path / "bad.txt", SYMBOLS)


def _nbest_dir(tmp_path, words: str, ac: str, lm: str):
    for name, text in (("words_text", words), ("acwt", ac), ("lmwt.withlm", lm)):
        (tmp_path / name).write_text(text)
    return tmp_path / "words_text", tmp_path / "acwt", tmp_path / "lmwt.withlm"


def test_nbest_archives_become_utterances_with_negated_costs(tmp_path):
    paths = _nbest_dir(tmp_path, "a-1 the cat\na-2 the\nb-1\n", "a-1 10\na-2 12\nb-1 5\n", "a-1 3\na-2 2\nb-1 1\n")
    (tmp_path / "text").write_text("a the cat\nb\n")
    utts = read_kaldi_nbest(*paths)
    attach_references(utts, read_kaldi_text(tmp_path / "text"), "text")
    assert [u.utt_id for u in utts] == ["a", "b"]
    assert [(h.text, h.am_score, h.lm_score) for h in utts[0].hyps] == [("the cat", -10.0, -3.0), ("the", -12.0, -2.0)]
    assert utts[1].hyps[0].text == "" and utts[1].ref == ""


@pytest.mark.parametrize("words, ac, message", [
    ("a-1 x\na-2 y\n", "a-1 1\n", "'a-2' is in .* but not in the acoustic-cost archive"),
    ("a-1 x\n", "a-1 1\nz-1 2\n", "'z-1' is in the acoustic-cost archive but not in"),
    ("a-1 x\na-3 y\n", "a-1 1\na-3 1\n", "utterance 'a' lacks hypothesis a-2"),
    ("a x\n", "a 1\n", "key 'a' is not of the form UTTID-N"),
    ("a-1 x\n", "a-1 nan\n", "expected a decimal number, found .nan."),
    ("a-1 x\n", "a-1 -inf\n", "expected a decimal number, found .-inf."),
    ("a-1 x\n", "a-1 1_0\n", "expected a decimal number, found .1_0."),
    ("a-1 x\n", "a-1 1 2\n", "expected one cost"),
])
def test_inconsistent_archives_are_errors_that_name_the_key(tmp_path, words, ac, message):
    lm = "".join(f"{line.split()[0]} 0\n" for line in ac.splitlines())
    with pytest.raises(NbestError, match=message):
        read_kaldi_nbest(*_nbest_dir(tmp_path, words, ac, lm))


def test_a_missing_reference_is_an_error_for_every_format(tmp_path):
    _nbest_dir(tmp_path, "a-1 x\n", "a-1 1\n", "a-1 1\n")
    (tmp_path / "text").write_text("other x\n")
    with pytest.raises(NbestError, match="text: no reference for utterance 'a'"):
        read_nbest(NbestSource(str(tmp_path), "kaldi", ref=str(tmp_path / "text")))
    (tmp_path / "n.jsonl").write_text('{"utt_id": "a", "hyps": [{"text": "x", "am_score": -1}]}\n')
    with pytest.raises(NbestError, match="text: no reference for utterance 'a'"):
        read_nbest(NbestSource(str(tmp_path / "n.jsonl"), ref=str(tmp_path / "text")))


def test_compact_lattice_paths_sum_graph_and_acoustic_costs(tmp_path):
    (tmp_path / "n.txt").write_text(
        "utt-1\n0\t1\t0\n1\t2\t1\t1.5,10.0,3_4\n2\t3\t2\t0.5,5.0,5\n3\t0.25,0,\n\n"
        "utt-2\n0\t1\t3\t2.0,7.0,1\n1\n\n"
    )
    utts = read_compact_lattice_nbest(tmp_path / "n.txt", SYMBOLS)
    h1, h2 = utts[0].hyps
    assert (h1.text, h1.lm_score, h1.am_score) == ("the cat", -2.25, -15.0)
    assert (h2.text, h2.lm_score, h2.am_score) == ("sat", -2.0, -7.0)


def test_the_real_lattice_to_nbest_fixture_parses_into_ten_paths():
    path = shared_data("kaldi-nbest-fixture-kgraph/nbest.txt")
    with pytest.raises(NbestError, match="--symbols words.txt"):  # ids are never scored as words
        read_compact_lattice_nbest(path)
    table = "<eps> 0\n" + "".join(f"w{i} {i}\n" for i in range(1, 100_001)) + "<unk> 100001\n"
    (utt,) = read_compact_lattice_nbest(path, parse_symbol_table(table, "words.txt"))
    assert utt.utt_id == "test" and len(utt.hyps) == 10
    first = utt.hyps[0]
    assert first.text.split()[0] == "w94013" and first.lm_score < 0
    # the first arc of test-1 carries graph cost 35.0782 and acoustic cost -410.369
    assert first.lm_score <= -35.0782


def test_integer_ids_need_symbols_and_digits_among_words_stay_words(tmp_path):
    from rescorer.formats.kaldi import read_words_archive

    ids = tmp_path / "ids"
    ids.write_text("u-1 1 2\nu-2 3\n")
    with pytest.raises(NbestError, match="holds integer word ids.*--symbols"):
        read_words_archive(ids)
    assert read_words_archive(ids, SYMBOLS) == {"u-1": ["the", "cat"], "u-2": ["sat"]}
    mixed = tmp_path / "words"  # a record of digits in an archive of words: words, with or without symbols
    mixed.write_text("u-1 the cat\nu-2 4 20\nu-3 \u00b2 \u0663\n")
    for symbols in (None, SYMBOLS):
        assert read_words_archive(mixed, symbols) == {"u-1": ["the", "cat"], "u-2": ["4", "20"],
                                                      "u-3": ["\u00b2", "\u0663"]}
    unicode_digits = tmp_path / "unicode"
    unicode_digits.write_text("u-1 \u0663 \u00b2\n")  # not ASCII integers: words, never decoded as ids
    assert read_words_archive(unicode_digits, SYMBOLS) == {"u-1": ["\u0663", "\u00b2"]}


def test_a_branching_lattice_is_refused(tmp_path):
    (tmp_path / "n.txt").write_text("utt-1\n0\t1\t1\t1,1,\n0\t2\t2\t1,1,\n1\n2\n")
    with pytest.raises(NbestError, match="not linear"):
        read_compact_lattice_nbest(tmp_path / "n.txt", SYMBOLS)


def test_a_kaldi_archive_is_read_gzipped_and_a_corrupt_one_is_one_input_error(tmp_path):
    import gzip as gzip_module

    from rescorer.formats.kaldi import read_cost_archive

    good = tmp_path / "costs.gz"
    good.write_bytes(gzip_module.compress(b"utt-1 3.5\nutt-2 1.25\n"))
    assert read_cost_archive(good) == {"utt-1": 3.5, "utt-2": 1.25}
    # gzip magic, then a stored block with bad lengths: zlib.error escaped the reader (found by the fuzz tier)
    bad = tmp_path / "bad.gz"
    bad.write_bytes(b"\x1f\x8b\x08" + b"\x00" * 12)
    with pytest.raises(NbestError, match="bad.gz: cannot read"):
        read_cost_archive(bad)
    with pytest.raises(NbestError, match="is a directory"):
        read_cost_archive(tmp_path)
