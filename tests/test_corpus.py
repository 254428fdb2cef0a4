import gzip

import numpy as np
import pytest

from rescorer.vocab import build_vocabulary
from training.corpus import CorpusError, count_words, encode_corpus, iter_sentences, sentences_from_ids, unigram_counts


def test_plain_and_gzip_corpora_read_the_same_sentences_and_skip_blank_lines(tmp_path):
    text = "the cat sat\n\n  a dog  \n"
    (tmp_path / "c.txt").write_text(text)
    with gzip.open(tmp_path / "c.txt.gz", "wt") as f:
        f.write(text)
    expected = [["the", "cat", "sat"], ["a", "dog"]]
    assert list(iter_sentences(tmp_path / "c.txt")) == expected
    assert list(iter_sentences(tmp_path / "c.txt.gz")) == expected


def test_a_line_that_is_not_utf8_is_reported_with_file_and_line_number(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"fine line\nbad \xff byte\n")
    with pytest.raises(CorpusError, match=r"bad\.txt:2: not UTF-8"):
        list(iter_sentences(path))


def test_missing_and_empty_corpora_are_clear_errors(tmp_path):
    with pytest.raises(CorpusError, match="not found"):
        list(iter_sentences(tmp_path / "nope.txt"))
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(CorpusError, match="empty corpus"):
        count_words([tmp_path / "empty.txt"])
    vocab = build_vocabulary({"a": 1})
    with pytest.raises(CorpusError, match="no sentences"):
        encode_corpus(tmp_path / "empty.txt", vocab, tmp_path / "cache")


def test_encoded_stream_brackets_each_sentence_counts_oov_and_is_memory_mapped(tmp_path):
    (tmp_path / "c.txt").write_text("a b\nb zz a\n")
    vocab = build_vocabulary({"a": 2, "b": 2})
    corpus = encode_corpus(tmp_path / "c.txt", vocab, tmp_path / "cache")
    ids = corpus.ids()
    assert isinstance(ids, np.memmap)
    a, b = vocab.id_of("a"), vocab.id_of("b")
    assert ids.tolist() == [vocab.bos_id, a, b, vocab.eos_id, vocab.bos_id, b, vocab.unk_id, a, vocab.eos_id]
    assert (corpus.num_sentences, corpus.num_words, corpus.num_oov) == (2, 5, 1)
    assert [s.tolist() for s in sentences_from_ids(ids, vocab.bos_id, vocab.eos_id)] == [[a, b], [b, vocab.unk_id, a]]


def test_encoding_is_cached_until_the_file_changes(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("a b\n")
    vocab = build_vocabulary({"a": 1, "b": 1})
    first = encode_corpus(path, vocab, tmp_path / "cache")
    assert encode_corpus(path, vocab, tmp_path / "cache").ids_path == first.ids_path
    path.write_text("a b a\n")
    second = encode_corpus(path, vocab, tmp_path / "cache")
    assert second.ids_path != first.ids_path and second.num_words == 3


def test_unigram_counts_count_targets_and_never_the_start_symbol():
    vocab = build_vocabulary({"a": 1, "b": 1})
    ids = np.array([vocab.bos_id, vocab.id_of("a"), vocab.id_of("a"), vocab.eos_id, vocab.bos_id])
    counts = unigram_counts(ids, len(vocab), vocab.bos_id)
    assert counts[vocab.bos_id] == 0 and counts[vocab.id_of("a")] == 2 and counts[vocab.eos_id] == 1
