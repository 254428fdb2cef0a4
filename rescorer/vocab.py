"""Vocabulary: the word <-> id map of a model, stored as a Kaldi symbol table (`words.txt`).

A Kaldi `words.txt` has one `word id` pair per line. Ids must be dense (0..V-1) because they
index the rows of the model's embedding and output matrices. Symbols that Kaldi tables carry
but a language model never predicts (`<eps>`, `#0`, ...) are kept: they simply never occur in
training data, get zero noise probability under NCE and are pushed down by a softmax.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rescorer.bounded_read import read_text_bounded
from rescorer.errors import InputError
from rescorer.words import split_words

BOS = "<s>"
EOS = "</s>"
UNK = "<unk>"
SPECIAL_SYMBOLS = (BOS, EOS, UNK)
_BOUNDARIES = frozenset((BOS, EOS))
_ID = re.compile(r"[0-9]+")  # ASCII digits only: '--4', '-1' or '²' are not ids


class VocabularyError(InputError):
    """A symbol table that cannot be used: malformed line, duplicate word or id, gap in ids."""


@dataclass(frozen=True)
class Vocabulary:
    """An ordered list of words; a word's id is its position."""

    words: tuple[str, ...]
    unk_symbol: str = UNK
    _index: dict[str, int] = field(init=False, repr=False, compare=False)
    _text_index: dict[str, int] = field(init=False, repr=False, compare=False)  # without <s>, </s>

    def __post_init__(self) -> None:
        index: dict[str, int] = {}
        for i, word in enumerate(self.words):
            if word in index:
                raise VocabularyError(f"word {word!r} appears twice (ids {index[word]} and {i})")
            index[word] = i
        for symbol in (BOS, EOS, self.unk_symbol):
            if symbol not in index:
                raise VocabularyError(f"vocabulary lacks the required symbol {symbol!r}")
        if self.unk_symbol in (BOS, EOS):
            raise VocabularyError(f"the unknown-word symbol cannot be the sentence boundary {self.unk_symbol!r}")
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_text_index", {w: i for w, i in index.items() if w not in _BOUNDARIES})

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self._index

    @property
    def bos_id(self) -> int:
        return self._index[BOS]

    @property
    def eos_id(self) -> int:
        return self._index[EOS]

    @property
    def unk_id(self) -> int:
        return self._index[self.unk_symbol]

    def id_of(self, word: str) -> int:
        """The id of `word`, or the id of the unknown-word symbol."""
        return self._index.get(word, self.unk_id)

    def encode(self, words: Sequence[str]) -> list[int]:
        """Ids of the words of a text. A literal `<s>` or `</s>` in a text is a word like any
        other outside the vocabulary (the unknown-word id), never a sentence boundary: only the
        code that brackets a sentence writes those ids."""
        unk, index = self.unk_id, self._text_index
        return [index.get(w, unk) for w in words]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.words[i] for i in ids]

    def to_text(self) -> str:
        """The Kaldi symbol-table text: `word id` per line."""
        return "".join(f"{w} {i}\n" for i, w in enumerate(self.words))

    @property
    def sha256(self) -> str:
        """Hash of the symbol table, stored in artifacts to detect a mismatched words.txt."""
        return hashlib.sha256(self.to_text().encode("utf-8")).hexdigest()


def build_vocabulary(
    counts: dict[str, int], max_size: int | None = None, min_count: int = 1, unk_symbol: str = UNK
) -> Vocabulary:
    """Special symbols first (`<s>`, `</s>`, the unknown-word symbol, `<unk>` by default), then
    words by descending count.

    Ties are broken alphabetically so that the same corpus always gives the same ids.
    `max_size` counts the special symbols too.
    """
    if min_count < 1:
        raise VocabularyError(f"min_count must be at least 1, got {min_count}")
    if max_size is not None and max_size <= len(SPECIAL_SYMBOLS):
        raise VocabularyError(
            f"max_size must exceed the {len(SPECIAL_SYMBOLS)} special symbols, got {max_size}"
        )
    special = (BOS, EOS, unk_symbol)
    ranked = sorted(
        (w for w, c in counts.items() if c >= min_count and w not in special and w not in _BOUNDARIES),
        key=lambda w: (-counts[w], w),
    )
    if max_size is not None:
        ranked = ranked[: max_size - len(special)]
    return Vocabulary(special + tuple(ranked), unk_symbol)


def parse_symbol_table(text: str, source: str, unk_symbol: str = UNK) -> Vocabulary:
    """Parse Kaldi `words.txt` text; `source` names the file in error messages.

    `<s>`, `</s>` and the unknown-word symbol are appended (with new ids) if the table lacks
    them, as a Kaldi table built without them would.
    """
    by_id: dict[int, str] = {}
    for line_no, line in enumerate(text.split("\n"), start=1):  # lines end at \n only, as Kaldi reads them
        parts = split_words(line)
        if not parts:
            continue
        if len(parts) != 2 or not _ID.fullmatch(parts[1]):
            raise VocabularyError(
                f"{source}:{line_no}: expected 'word id' (Kaldi symbol table), found {line!r}"
            )
        word, idx = parts[0], int(parts[1])
        if idx < 0:
            raise VocabularyError(f"{source}:{line_no}: negative id {idx}")
        if idx in by_id:
            raise VocabularyError(
                f"{source}:{line_no}: id {idx} given to both {by_id[idx]!r} and {word!r}"
            )
        by_id[idx] = word
    if not by_id:
        raise VocabularyError(f"{source}: empty symbol table")
    missing = sorted(set(range(len(by_id))) - set(by_id))
    if missing:
        raise VocabularyError(
            f"{source}: ids must be dense 0..{len(by_id) - 1}; missing id {missing[0]}"
            f" (max id {max(by_id)})"
        )
    words = [by_id[i] for i in range(len(by_id))]
    for symbol in (BOS, EOS, unk_symbol):
        if symbol not in words:
            words.append(symbol)
    try:
        return Vocabulary(tuple(words), unk_symbol=unk_symbol)
    except VocabularyError as e:
        raise VocabularyError(f"{source}: {e}") from None


def read_symbol_table(path: str | Path, unk_symbol: str = UNK) -> Vocabulary:
    path = Path(path)
    try:
        text = read_text_bounded(path)
    except FileNotFoundError:
        raise VocabularyError(f"{path}: symbol table not found") from None
    except UnicodeDecodeError as e:
        raise VocabularyError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:  # a directory, no permission, a file where a directory should be
        raise VocabularyError(f"{path}: cannot read the symbol table ({e.strerror or e})") from None
    return parse_symbol_table(text, str(path), unk_symbol)
