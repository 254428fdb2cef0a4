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
# what str.split() also splits on (every character whose str.isspace() is true, less the ASCII
# whitespace above; tests/test_words_and_numbers.py derives the set from Python's own rule)
PYTHON_ONLY_WHITESPACE = "\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
_PYTHON_ONLY_WHITESPACE = re.compile(f"[{PYTHON_ONLY_WHITESPACE}]")


def split_words(text: str) -> list[str]:
    """The words of `text`: the fields between runs of ASCII whitespace. Text without any
    character that only Python counts as whitespace (nearly all text) takes str.split(), which
    then splits exactly there and skips the regular expression's list of fields: the service
    splits every hypothesis of every request."""
    if _PYTHON_ONLY_WHITESPACE.search(text) is None:
        return text.split()
    return [field for field in ASCII_WHITESPACE.split(text) if field]


def join_words(text: str) -> str:
    """`text` with its words separated by single spaces and no space at either end."""
    return " ".join(split_words(text))
