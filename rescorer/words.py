"""One rule for words, everywhere: words are separated by ASCII whitespace (space, tab, line
feed, carriage return, vertical tab, form feed), as Kaldi splits them, and by nothing else.

Every reader (Kaldi archives and text, trn, JSONL, HyPoradise, ESPnet, symbol tables), the
training corpora, the hypotheses' words, the WER's alignment and the service split text with
`split_words`. So a character Python's str.split() would also split on (U+00A0, U+2028,
U+0085, U+3000, U+202F, \\x1c-\\x1f) stays inside its word on every path: `the<U+00A0>cook` is
one word to the scorer, the combination, the WER and Kaldi's compute-wer alike, and a
vocabulary holding it can be written and read back.
"""

from __future__ import annotations

import re

ASCII_WHITESPACE = re.compile(r"[ \t\n\r\x0b\x0c]+")


def split_words(text: str) -> list[str]:
    """The words of `text`: the fields between runs of ASCII whitespace."""
    return [field for field in ASCII_WHITESPACE.split(text) if field]


def join_words(text: str) -> str:
    """`text` with its words separated by single spaces and no space at either end."""
    return " ".join(split_words(text))
