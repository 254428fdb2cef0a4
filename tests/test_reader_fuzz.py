"""Every reader fuzzed with `hypothesis`: random bytes, truncations of valid files, deep nesting,
odd encodings and line endings. Each input is either read, or refused with one InputError whose
message names the file; nothing else may escape (no traceback, no wrong type). Bounded: a fixed
number of examples per reader (FUZZ_EXAMPLES, more in `make fuzz`).
"""

import contextlib
import gzip
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rescorer.errors import InputError
from rescorer.formats.hyporadise import read_hyporadise
from rescorer.formats.jsonl import read_jsonl
from rescorer.formats.kaldi import read_compact_lattice_nbest, read_kaldi_nbest, read_kaldi_text
from rescorer.formats.score_mapping import parse_score_mapping
from rescorer.formats.trn import read_trn
from rescorer.vocab import parse_symbol_table, read_symbol_table
from training.corpus import iter_sentences

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

VALID = {
    "jsonl": b'{"utt_id": "u1", "hyps": [{"text": "a b", "am_score": -1.5, "lm_score": -2.0}], "ref": "a b"}\n'
             b'{"utt_id": "u2", "hyps": [{"text": "c", "am_score": -0.5}]}\n',
    "hyporadise": b'[{"id": "x1", "input": ["a b", "a c"], "output": "a b", "am_score": [-0.3, -0.4]}]',
    "kaldi_text": b"utt1 a b c\nutt2\tb c\n",
    "trn": b"a b c (utt1)\nb c (utt2)\n",
    "symbols": b"<eps> 0\n<s> 1\n</s> 2\n<unk> 3\na 4\n",
    "corpus": b"a b c\n\nd e\n",
    "lattice": b"utt1-1\n0 1 4 1.5,2.5,1_2\n1 0,0,\n\nutt1-2\n0 1 4 1.0,3.0,1\n1 0,0,\n\n",
}
ODD = [b"", b"\x00", b"\xff\xfe", b"\xef\xbb\xbf", b"\r", b"\r\n", b"\t", "\u2028".encode(), b"\x1f\x8b", b"[" * 5000,
       *(c.encode() for c in "\u00a0\u0085\u3000\u202f\x1c\x1d\x1e\x1f"), b"nan", b"-inf", b"1_0", b"NaN",
       b"Infinity", "\u0661".encode(), b"\xc2\xb2",
       b'{"utt_id": ' + b"9" * 5000 + b"}", b"\x1f\x8b\x08\x00\x00\x00\x00\x00"]


def _mutations(valid: bytes):
    """Truncations, byte flips, insertions of odd fragments, gzip (truncated too), random bytes."""
    cut = st.integers(0, len(valid)).map(lambda n: valid[:n])
    flip = st.tuples(st.integers(0, max(len(valid) - 1, 0)), st.integers(0, 255)).map(
        lambda t: valid[: t[0]] + bytes([t[1]]) + valid[t[0] + 1:])
    insert = st.tuples(st.integers(0, len(valid)), st.sampled_from(ODD)).map(
        lambda t: valid[: t[0]] + t[1] + valid[t[0]:])
    gz = st.integers(0, 200).map(lambda n: gzip.compress(valid)[: len(gzip.compress(valid)) - n])
    return cut | flip | insert | gz | st.binary(max_size=200)


def _read_kaldi_dir(path: Path):
    """A Kaldi nbest directory whose `words_text` is the fuzzed file and whose costs are valid."""
    directory = path.parent / "kaldi"
    directory.mkdir(exist_ok=True)
    (directory / "words_text").write_bytes(path.read_bytes())
    (directory / "acwt").write_bytes(b"utt1-1 10.5\nutt2-1 3.0\n")
    return read_kaldi_nbest(directory / "words_text", directory / "acwt", None)


READERS = {
    "jsonl": read_jsonl, "hyporadise": read_hyporadise, "kaldi_text": read_kaldi_text, "trn": read_trn,
    "symbols": read_symbol_table, "corpus": lambda path: list(iter_sentences(path)),
    "lattice": lambda path: read_compact_lattice_nbest(path, parse_symbol_table(VALID["symbols"].decode(), "words.txt")),
    "kaldi_dir": _read_kaldi_dir,
}
VALID["kaldi_dir"] = b"utt1-1 a b\nutt2-1 c\n"


@pytest.mark.parametrize("kind", sorted(READERS))
def test_every_reader_reads_or_refuses_with_one_input_error_naming_the_file(kind, tmp_path_factory):
    directory = tmp_path_factory.mktemp(kind)
    path = directory / f"input.{kind}"
    READERS[kind](_write(path, VALID[kind]))  # the seed input is valid

    @FUZZ
    @given(_mutations(VALID[kind]))
    def check(data: bytes) -> None:
        try:
            READERS[kind](_write(path, data))
        except InputError as e:
            message = str(e)
            assert "input." in message or "kaldi" in message, message  # names the file
            assert "\n" not in message.strip(), message  # one line
    check()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@FUZZ
@given(st.text(max_size=60))
def test_score_mappings_parse_or_refuse_with_an_input_error(spec):
    with contextlib.suppress(InputError):  # anything else fails the test
        parse_score_mapping(spec)


def test_a_json_reader_refuses_deep_nesting_in_every_container_position(tmp_path):
    for body in (b"[" * 100_000, b'{"a":' * 100_000, b'{"utt_id": "u", "hyps": ' + b"[" * 100_000):
        path = tmp_path / "deep.jsonl"
        path.write_bytes(body + b"\n")
        with pytest.raises(InputError):
            read_jsonl(path)
        path = tmp_path / "deep.json"
        path.write_bytes(body)
        with pytest.raises(InputError):
            read_hyporadise(path)
    assert json.loads(VALID["hyporadise"])  # the seed is JSON


@FUZZ
@given(st.lists(st.text(alphabet=st.characters(blacklist_characters=" \t\n\r\x0b\x0c", blacklist_categories=("Cs",)),
                        min_size=1, max_size=8), min_size=1, max_size=12, unique=True))
def test_any_training_word_round_trips_through_a_symbol_table(words):
    """Words are whatever lies between ASCII whitespace: every such word, Unicode spaces and
    control characters included, is written to words.txt and read back as the same word."""
    from rescorer.vocab import build_vocabulary

    vocab = build_vocabulary(dict.fromkeys(words, 1))
    assert parse_symbol_table(vocab.to_text(), "words.txt").words == vocab.words
