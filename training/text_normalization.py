"""Bringing written-text corpora to the conventions of an N-best list's transcripts.

`wikitext_to_librispeech`: WikiText-2 paragraphs -> LibriSpeech-style sentences (upper case,
apostrophes kept, no other punctuation). The rules, in order:
1. heading lines (`= Title =`) and blank lines are dropped;
2. a paragraph is split into sentences after the tokens `.`, `?` and `!`;
3. `@-@` (a hyphen inside a compound) splits the compound into words, as LibriSpeech writes
   them; `@,@` and `@.@` (inside numbers) join the digits;
4. a token that starts with an apostrophe and a letter (`'s`, `'t`, `'re`, `'ll`, `'Brien`)
   is attached to the previous word (`game 's` -> `GAME'S`, `don 't` -> `DON'T`), and so is
   `n't` (`do n't` -> `DON'T`);
5. every other character that is not a letter, a digit or an apostrophe is removed, tokens
   left empty or holding only apostrophes are dropped, and the rest is upper-cased;
6. `<unk>` stays `<unk>` (the model learns how likely an unknown word is).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

_SENTENCE_END = {".", "?", "!"}
_KEEP = re.compile(r"[^\w']", flags=re.UNICODE)
_NUMBER_JOINERS = ("@,@", "@.@")


def wikitext_to_librispeech(lines: Iterable[str]) -> Iterator[str]:
    """Yield normalized sentences (space-separated words) from WikiText lines."""
    for line in lines:
        stripped = line.strip()
        if not stripped or (stripped.startswith("=") and stripped.endswith("=")):
            continue
        sentence: list[str] = []
        tokens = stripped.split()
        i = 0
        while i < len(tokens):
            token = tokens[i]
            if token in _NUMBER_JOINERS and sentence and i + 1 < len(tokens):
                sentence[-1] += tokens[i + 1]
                i += 2
                continue
            i += 1
            if token in _SENTENCE_END:
                if sentence:
                    yield " ".join(sentence)
                sentence = []
                continue
            if token == "@-@":
                continue
            if token == "<unk>":
                sentence.append(token)
                continue
            word = _KEEP.sub("", token).replace("_", "").upper()
            if not word.strip("'"):
                continue
            clitic = word == "N'T" or (word.startswith("'") and len(word) > 1 and word[1].isalpha())
            if clitic and sentence and sentence[-1] != "<unk>":
                sentence[-1] += word
            else:
                sentence.append(word.strip("'") if word.endswith("'") and word.startswith("'") else word)
        if sentence:
            yield " ".join(sentence)
