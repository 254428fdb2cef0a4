import pytest

from rescorer.vocab import (
    BOS,
    EOS,
    UNK,
    Vocabulary,
    VocabularyError,
    build_vocabulary,
    parse_symbol_table,
    read_symbol_table,
)


def test_build_vocabulary_puts_specials_first_then_words_by_count_with_alphabetical_ties():
    vocab = build_vocabulary({"b": 3, "a": 3, "c": 5, "d": 1})
    assert vocab.words == (BOS, EOS, UNK, "c", "a", "b", "d")


def test_build_vocabulary_size_cap_counts_specials_and_min_count_drops_rare_words():
    counts = {"x": 9, "y": 5, "z": 2, "w": 1}
    assert build_vocabulary(counts, max_size=5).words[3:] == ("x", "y")
    assert build_vocabulary(counts, min_count=2).words[3:] == ("x", "y", "z")


def test_unknown_words_map_to_unk_and_encode_decode_round_trip():
    vocab = build_vocabulary({"hello": 2, "world": 1})
    ids = vocab.encode(["hello", "mars", "world"])
    assert ids[1] == vocab.unk_id
    assert vocab.decode(ids) == ["hello", UNK, "world"]


def test_symbol_table_text_round_trips_and_hash_changes_with_content():
    vocab = build_vocabulary({"a": 1, "b": 1})
    again = parse_symbol_table(vocab.to_text(), "mem")
    assert again.words == vocab.words and again.sha256 == vocab.sha256
    assert build_vocabulary({"a": 1, "c": 1}).sha256 != vocab.sha256


def test_kaldi_table_keeps_its_ids_and_gains_missing_special_symbols(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("<eps> 0\n!SIL 1\n<unk> 2\nhello 3\n#0 4\n")
    vocab = read_symbol_table(path)
    assert vocab.id_of("hello") == 3 and vocab.id_of("<eps>") == 0
    assert vocab.words[5:] == (BOS, EOS)


@pytest.mark.parametrize("text, message", [
    ("a 0\nb\n", "mem:2: expected 'word id'"),
    ("a 0\nb 0\n", "mem:2: id 0 given to both"),
    ("a 0\nb 2\n", "missing id 1"),
    ("a 0\na 1\n", "appears twice"),
    ("", "empty symbol table"),
])
def test_malformed_symbol_tables_are_rejected_with_line_and_reason(text, message):
    with pytest.raises(VocabularyError, match=message):
        parse_symbol_table(text, "mem")


def test_vocabulary_requires_sentence_boundary_symbols():
    with pytest.raises(VocabularyError, match="required symbol"):
        Vocabulary(("a", EOS, UNK))
