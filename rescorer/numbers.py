"""One rule for numbers in text inputs: plain decimal notation, finite, ASCII.

Python's float() also takes 'nan', '-inf', 'infinity', '1_0' and non-ASCII digits ('١٢');
int() takes '1_0' and '²'-free Unicode digits. None of them is a score, a cost or an id that
Kaldi or any recognizer writes, and a NaN or an infinity that gets into a total decides a
1-best silently. Every reader of numbers in text (Kaldi cost archives, lattices, symbol
tables) parses with these; JSON readers refuse NaN and Infinity constants (text_files.parse_json).
"""

from __future__ import annotations

import math
import re

_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INTEGER = re.compile(r"[+-]?[0-9]+")


def parse_decimal(text: str) -> float:
    """A finite float written in decimal notation; ValueError naming what was found otherwise."""
    if not _DECIMAL.fullmatch(text):
        raise ValueError(f"expected a decimal number, found {text[:40]!r}")
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]!r} is beyond the range of a float")
    return value


def parse_integer(text: str) -> int:
    """An integer in ASCII digits; ValueError otherwise."""
    if not _INTEGER.fullmatch(text):
        raise ValueError(f"expected an integer, found {text[:40]!r}")
    return int(text)
