"""Text corpora: one sentence per line, plain or gzip, encoded once to a memory-mapped id array.

The encoded stream is `<s> w_1 .. w_n </s> <s> w_1 ..`: every sentence starts from the same
context token that the scorer feeds first, so training and rescoring see the same condition.
Blank lines are skipped (they carry no words to predict). The id array is an int32 `.npy`
file opened with `mmap_mode="r"`, so a corpus larger than RAM is read window by window.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rescorer.atomic import atomic_file, write_text_atomic
from rescorer.errors import InputError
from rescorer.formats.text_files import TextFile, open_binary, split_fields
from rescorer.subword import SubwordTokenizer
from rescorer.vocab import Vocabulary

ENCODE_CHUNK = 1 << 20  # ids buffered in memory before they are appended to the file


class CorpusError(InputError):
    """Unreadable corpus: missing file, bytes that are not UTF-8, no sentences."""


def iter_sentences(path: str | Path) -> Iterator[list[str]]:
    """Yield the words of each non-blank line, read as every text input is (rescorer.formats.text_files:
    lines end at \\n, fields split on ASCII whitespace); bad bytes and corrupt gzip data are
    errors naming the file and line."""
    with TextFile(open_binary(path, CorpusError, "corpus file"), str(path), CorpusError) as f:
        for line in f:
            words = split_fields(line)
            if words:
                yield words


def count_words(paths: Iterable[str | Path]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for path in paths:
        for words in iter_sentences(path):
            counts.update(words)
    if not counts:
        raise CorpusError(f"no words in {', '.join(map(str, paths))} (empty corpus)")
    return counts


@dataclass(frozen=True)
class EncodedCorpus:
    """A corpus as a stream of ids on disk."""

    source: str
    ids_path: Path
    num_sentences: int
    num_words: int  # words in the text, excluding <s> and </s>
    num_oov: int  # words mapped to <unk> (not counting literal <unk> tokens)

    def ids(self) -> np.ndarray:
        """The id stream, memory-mapped read-only: (num_tokens,) int32."""
        return np.load(self.ids_path, mmap_mode="r")


def _cache_key(path: Path, vocab: Vocabulary, tokenizer: SubwordTokenizer | None) -> str:
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{vocab.sha256}"
    if tokenizer is not None:
        key += f"|{tokenizer.sha256}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def encode_corpus(path: str | Path, vocab: Vocabulary, cache_dir: str | Path,
                  tokenizer: SubwordTokenizer | None = None) -> EncodedCorpus:
    """Encode `path` to `cache_dir/<name>.<key>.npy` once; later calls reuse the file. With a
    tokenizer the stream holds each sentence's subword pieces (`num_words` still counts words).

    The key covers the file's path, size, modification time, the vocabulary and the tokenizer's hash.
    """
    path, cache_dir = Path(path), Path(cache_dir)
    if not path.exists():
        raise CorpusError(f"{path}: corpus file not found")
    key = _cache_key(path, vocab, tokenizer)
    ids_path = cache_dir / f"{path.name}.{key}.npy"
    meta_path = cache_dir / f"{path.name}.{key}.json"
    if ids_path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        return EncodedCorpus(str(path), ids_path, **meta)

    num_tokens, num_sentences, num_words, num_oov = _count_stream(path, vocab, tokenizer)
    if num_sentences == 0:
        raise CorpusError(f"{path}: no sentences (empty corpus or only blank lines)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with atomic_file(ids_path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.int32, shape=(num_tokens,))
        position = 0
        for chunk in _id_chunks(path, vocab, tokenizer):
            out[position : position + len(chunk)] = chunk
            position += len(chunk)
        out.flush()
        del out
    meta = {"num_sentences": num_sentences, "num_words": num_words, "num_oov": num_oov}
    write_text_atomic(meta_path, json.dumps(meta))
    return EncodedCorpus(str(path), ids_path, **meta)


def _count_stream(path: Path, vocab: Vocabulary, tokenizer: SubwordTokenizer | None) -> tuple[int, int, int, int]:
    """Tokens (with <s> and </s>), sentences, words, and the tokens that are <unk> without being
    a literal <unk> (words outside a word vocabulary; pieces a tokenizer could not spell)."""
    num_sentences = num_words = num_oov = num_pieces = 0
    unk = vocab.unk_symbol
    for words in iter_sentences(path):
        num_sentences += 1
        num_words += len(words)
        if tokenizer is None:
            num_oov += sum(1 for w in words if w not in vocab and w != unk)
        else:
            pieces = tokenizer.pieces(words)
            num_pieces += len(pieces)
            num_oov += pieces.count(unk)
    tokens = num_words if tokenizer is None else num_pieces
    return tokens + 2 * num_sentences, num_sentences, num_words, num_oov


def _id_chunks(path: Path, vocab: Vocabulary, tokenizer: SubwordTokenizer | None) -> Iterator[np.ndarray]:
    buffer: list[int] = []
    bos, eos = vocab.bos_id, vocab.eos_id
    for words in iter_sentences(path):
        buffer.append(bos)
        buffer.extend(vocab.encode(words if tokenizer is None else tokenizer.pieces(words)))
        buffer.append(eos)
        if len(buffer) >= ENCODE_CHUNK:
            yield np.asarray(buffer, dtype=np.int32)
            buffer = []
    if buffer:
        yield np.asarray(buffer, dtype=np.int32)


def unigram_counts(ids: np.ndarray, vocab_size: int, bos_id: int) -> np.ndarray:
    """Counts of each word as a prediction target: (V,) int64. `<s>` is never a target."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for start in range(0, len(ids), ENCODE_CHUNK):
        counts += np.bincount(ids[start : start + ENCODE_CHUNK], minlength=vocab_size)
    counts[bos_id] = 0
    return counts


def sentences_from_ids(ids: np.ndarray, bos_id: int, eos_id: int) -> list[np.ndarray]:
    """Split an encoded stream back into per-sentence word ids (without `<s>`/`</s>`)."""
    ends = np.flatnonzero(np.asarray(ids) == eos_id)
    sentences, start = [], 0
    for end in ends:
        sentence = np.asarray(ids[start:end])
        if len(sentence) and sentence[0] == bos_id:
            sentence = sentence[1:]
        sentences.append(sentence.astype(np.int64))
        start = end + 1
    return sentences
