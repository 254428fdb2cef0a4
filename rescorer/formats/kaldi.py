"""Kaldi's N-best files, read strictly: every malformed record is an error naming file and key.

Kaldi writes costs (negated natural-log scores); this module is the only place that converts
them: am_score = -acoustic cost, lm_score = -LM (graph) cost.

Supported inputs:
- `nbest-to-linear` output: a words archive (`utt-1 w1 w2 ...`, words or integer ids with a
  words.txt), acoustic-cost and LM-cost archives (text `ark,t` or binary), keyed `utt-1..utt-N`;
- the CompactLattice text archive of `lattice-to-nbest` itself (arcs `src dst word
  graph_cost,acoustic_cost,transition-ids`, final states `state [weights]`), costs summed per path;
- references as a Kaldi `text` file (`utt-id word word ...`).

Binary archives are parsed here rather than with kaldiio: its generic reader takes a binary
BaseFloat scalar (`\\0B\\4<float32>`) for an int32 vector, and it unpickles records marked
`PKL`, which an input file must never be able to trigger.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from rescorer.bounded_read import read_stream_bounded
from rescorer.formats.text_files import CORRUPT_GZIP, open_binary, open_text, read_keyed_lines
from rescorer.nbest import MAX_SCORE, Hypothesis, NbestError, Utterance, check_utterance, normalize_text
from rescorer.numbers import parse_decimal, parse_integer
from rescorer.vocab import Vocabulary
from rescorer.words import ASCII_WHITESPACE, split_words

_NBEST_KEY = re.compile(r"^(?P<utt>.+)-(?P<n>[1-9][0-9]*)$")  # ASCII digits only


def _read_bytes(path: str | Path) -> bytes:
    """The archive's bytes (gunzipped if gzip); a missing, unreadable or damaged file is an NbestError."""
    with open_binary(path, NbestError, "Kaldi archive") as f:
        try:
            return read_stream_bounded(f, path)
        except (OSError, *CORRUPT_GZIP) as e:  # an unreadable file, a truncated or corrupt gzip stream
            raise NbestError(f"{path}: cannot read ({e})") from None


def _iter_records(path: str | Path, binary_kind: str) -> Iterable[tuple[str, bytes | str]]:
    """Yield (key, payload): binary payloads (bytes) start with b'\\0B', text payloads are str.

    `binary_kind` says what a binary object is: "float" (BaseFloat scalar: \\0B, size byte,
    value) or "int32_vector" (\\0B, \\4, int32 length, then length x (\\4, int32)).
    """
    data = _read_bytes(path)
    pos = 0
    while pos < len(data):
        while pos < len(data) and data[pos : pos + 1] in (b"\n", b" ", b"\r", b"\t"):
            pos += 1
        if pos >= len(data):
            break
        # the key ends at the first ASCII whitespace (a space or a tab, as Kaldi reads it)
        found = _KEY_END.search(data, pos)
        if found is None or found.group() == b"\n":  # a key with empty text
            line_end = len(data) if found is None else found.start()
            yield _decode_key(data[pos:line_end].rstrip(b" \t\r\x0b\x0c"), path), ""
            pos = line_end + 1
            continue
        key = _decode_key(data[pos:found.start()], path)
        pos = found.start() + 1
        if data[pos : pos + 2] == b"\0B":
            length = _binary_length(data, pos, binary_kind, path, key)
            yield key, data[pos : pos + length]
            pos += length
        else:
            end = data.find(b"\n", pos)
            end = len(data) if end == -1 else end
            try:
                yield key, data[pos:end].decode("utf-8")
            except UnicodeDecodeError:
                raise NbestError(f"{path}: record {key!r} is not UTF-8 text") from None
            pos = end + 1


_KEY_END = re.compile(rb"[ \t\r\x0b\x0c\n]")


def _decode_key(raw: bytes, path) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise NbestError(f"{path}: a key is not UTF-8 ({raw[:40]!r})") from None


def _binary_length(data: bytes, pos: int, kind: str, path, key: str) -> int:
    size = data[pos + 2] if pos + 2 < len(data) else None
    if kind == "float" and size in (4, 8) and pos + 3 + size <= len(data):
        return 3 + size
    if kind == "int32_vector" and size == 4 and pos + 7 <= len(data):
        (length,) = struct.unpack("<i", data[pos + 3 : pos + 7])
        if length >= 0 and pos + 7 + 5 * length <= len(data):
            return 7 + 5 * length
    expected = "a BaseFloat cost" if kind == "float" else "an int32 vector of word ids"
    raise NbestError(f"{path}: record {key!r}: truncated or unsupported binary object (expected {expected})")


def read_cost_archive(path: str | Path) -> dict[str, float]:
    """A Kaldi archive of BaseFloat costs, text (`key cost`) or binary."""
    costs: dict[str, float] = {}
    for key, payload in _iter_records(path, "float"):
        if isinstance(payload, bytes):
            size = payload[2]
            value = struct.unpack("<f" if size == 4 else "<d", payload[3 : 3 + size])[0]
            if not math.isfinite(value):
                raise NbestError(f"{path}: record {key!r}: the cost is {value} (expected a finite number)")
        else:
            fields = split_words(payload)
            if len(fields) != 1:
                raise NbestError(f"{path}: record {key!r}: expected one cost, found {payload!r}")
            try:
                value = parse_decimal(fields[0])
            except ValueError as e:
                raise NbestError(f"{path}: record {key!r}: {e}") from None
        if abs(value) > MAX_SCORE:
            raise NbestError(f"{path}: record {key!r}: cost {value:g} is beyond +-{MAX_SCORE:g}")
        if key in costs:
            raise NbestError(f"{path}: key {key!r} appears twice")
        costs[key] = value
    return costs


def read_words_archive(path: str | Path, symbols: Vocabulary | None = None) -> dict[str, list[str]]:
    """A words archive: text words, text integer ids, or binary int32 vectors (ids need `symbols`).

    A text archive holds ids when every token of every record is an ASCII integer (then
    `symbols` is required); otherwise every record is words, digits included ("4 20" in an
    archive of words stays "4 20"): one decision for the whole archive, never per record."""
    out: dict[str, list[str]] = {}
    text_keys: list[str] = []
    for key, payload in _iter_records(path, "int32_vector"):
        if key in out:
            raise NbestError(f"{path}: key {key!r} appears twice")
        if isinstance(payload, bytes):
            (length,) = struct.unpack("<i", payload[3:7])
            ids = [struct.unpack("<i", payload[8 + 5 * i : 12 + 5 * i])[0] for i in range(length)]
            out[key] = _ids_to_words(ids, symbols, path, key)
        else:
            out[key] = split_words(payload)
            text_keys.append(key)
    tokens = [t for key in text_keys for t in out[key]]
    if tokens and all(_INTEGER.fullmatch(t) for t in tokens):
        for key in text_keys:
            out[key] = _ids_to_words([int(t) for t in out[key]], symbols, path, key)
    return out


_INTEGER = re.compile(r"-?[0-9]+")  # ASCII digits only: '²' or '٣' are words, never ids


def _ids_to_words(ids: list[int], symbols: Vocabulary | None, path, key: str) -> list[str]:
    if symbols is None:
        raise NbestError(f"{path}: record {key!r} holds integer word ids; give the symbol table with"
                         " --symbols words.txt (the lang directory's words.txt)")
    bad = [i for i in ids if not 0 <= i < len(symbols)]
    if bad:
        raise NbestError(f"{path}: record {key!r}: word id {bad[0]} is not in the symbol table ({len(symbols)} symbols)")
    return symbols.decode(ids)


def read_kaldi_text(path: str | Path) -> dict[str, str]:
    """A Kaldi `text` file: `utt-id word word ...` per line (a line with only the id is empty text)."""
    return {key: normalize_text(text) for key, text in read_keyed_lines(path).items()}


def split_nbest_key(key: str, where: str) -> tuple[str, int]:
    match = _NBEST_KEY.match(key)
    if not match:
        raise NbestError(f"{where}: key {key!r} is not of the form UTTID-N (N = 1, 2, ...)")
    return match.group("utt"), int(match.group("n"))


def group_nbest(entries: dict[str, Hypothesis], where: str) -> list[Utterance]:
    """Gather `utt-n` keyed hypotheses into utterances; n must run 1..N without gaps."""
    by_utt: dict[str, dict[int, Hypothesis]] = {}
    for key, hyp in entries.items():
        utt, n = split_nbest_key(key, where)
        by_utt.setdefault(utt, {})[n] = hyp
    utterances = []
    for utt, hyps in by_utt.items():
        expected = list(range(1, len(hyps) + 1))
        if sorted(hyps) != expected:
            missing = sorted(set(range(1, max(hyps) + 1)) - set(hyps))
            raise NbestError(f"{where}: utterance {utt!r} lacks hypothesis {utt}-{missing[0]} (keys must run 1..N)")
        utterances.append(check_utterance(Utterance(utt, [hyps[n] for n in expected]), where))
    return utterances


def read_kaldi_nbest(
    words_path: str | Path, ac_cost_path: str | Path, lm_cost_path: str | Path | None = None,
    symbols: Vocabulary | None = None,
) -> list[Utterance]:
    """`nbest-to-linear` archives -> utterances (am_score = -ac cost, lm_score = -lm cost)."""
    words = read_words_archive(words_path, symbols)
    ac = read_cost_archive(ac_cost_path)
    lm = read_cost_archive(lm_cost_path) if lm_cost_path is not None else None
    for name, archive in (("acoustic-cost", ac), ("LM-cost", lm)):
        if archive is None:
            continue
        only_words, only_costs = sorted(set(words) - set(archive)), sorted(set(archive) - set(words))
        if only_words or only_costs:
            detail = (f"{only_words[0]!r} is in {words_path} but not in the {name} archive" if only_words
                      else f"{only_costs[0]!r} is in the {name} archive but not in {words_path}")
            raise NbestError(f"keys of the words and {name} archives differ: {detail}")
    entries = {key: Hypothesis(" ".join(w), -ac[key], None if lm is None else -lm[key]) for key, w in words.items()}
    return group_nbest(entries, str(words_path))


def read_compact_lattice_nbest(path: str | Path, symbols: Vocabulary | None = None) -> list[Utterance]:
    """The CompactLattice text archive of `lattice-to-nbest`: one linear lattice per `utt-n`."""
    entries: dict[str, Hypothesis] = {}
    key: str | None = None
    arcs: list[tuple[int, int, int, float, float]] = []
    with open_text(path) as f:
        for line_no, line in enumerate(f, start=1):
            fields = split_words(line)
            if not fields:
                if key is not None:
                    entries[key] = _linear_path(key, arcs, symbols, path)
                    key, arcs = None, []
                continue
            if key is None:
                if len(fields) != 1:
                    raise NbestError(f"{path}:{line_no}: expected a key line (UTTID-N), found {line.strip()!r}")
                key = fields[0]
                if key in entries:
                    raise NbestError(f"{path}:{line_no}: key {key!r} appears twice")
                continue
            arcs.append(_parse_arc(fields, f"{path}:{line_no}"))
    if key is not None:
        entries[key] = _linear_path(key, arcs, symbols, path)
    if not entries:
        raise NbestError(f"{path}: no lattices found")
    return group_nbest(entries, str(path))


def _parse_arc(fields: list[str], where: str) -> tuple[int, int, int, float, float]:
    """(src, dst, word, graph cost, acoustic cost); a final state is (state, -1, 0, g, a)."""
    try:
        if len(fields) in (1, 2):  # final state, with or without a final weight
            graph, ac = _parse_weight(fields[1], where) if len(fields) == 2 else (0.0, 0.0)
            return parse_integer(fields[0]), -1, 0, graph, ac
        if len(fields) == 4:
            graph, ac = _parse_weight(fields[3], where)
            return parse_integer(fields[0]), parse_integer(fields[1]), parse_integer(fields[2]), graph, ac
        if len(fields) == 3:  # arc with the default weight
            return parse_integer(fields[0]), parse_integer(fields[1]), parse_integer(fields[2]), 0.0, 0.0
    except ValueError:
        pass
    raise NbestError(f"{where}: expected 'src dst word graph_cost,ac_cost,transitions' or a final state, found {' '.join(fields)!r}")


def _parse_weight(text: str, where: str) -> tuple[float, float]:
    parts = text.split(",")
    if len(parts) < 2:
        raise ValueError(where)
    return parse_decimal(parts[0]), parse_decimal(parts[1])


def _linear_path(key: str, arcs: list, symbols: Vocabulary | None, path) -> Hypothesis:
    """Follow the arcs from state 0 to the final state, summing costs and collecting words."""
    outgoing = {a[0]: a for a in arcs if a[1] != -1}
    finals = {a[0]: a for a in arcs if a[1] == -1}
    if len(outgoing) != sum(1 for a in arcs if a[1] != -1):
        raise NbestError(f"{path}: lattice {key!r} is not linear (a state has two outgoing arcs)")
    state, graph, ac, ids = 0, 0.0, 0.0, []
    for _ in range(len(arcs) + 1):
        if state in finals:
            graph, ac = graph + finals[state][3], ac + finals[state][4]
            words = _ids_to_words(ids, symbols, path, key)  # a lattice's words are always ids
            return Hypothesis(" ".join(words), am_score=-ac, lm_score=-graph)
        if state not in outgoing:
            raise NbestError(f"{path}: lattice {key!r}: state {state} has no arc and is not final")
        _, state, word, g, a = outgoing[state]
        graph, ac = graph + g, ac + a
        if word != 0:  # 0 is epsilon
            ids.append(word)
    raise NbestError(f"{path}: lattice {key!r} has a cycle")


def kaldi_key(key: str) -> str:
    """`key`, if a Kaldi reader (ours or Kaldi's) reads it back as one key: non-empty, with no
    ASCII whitespace, on which the readers split. Written otherwise, 'u 1' would come back as
    key 'u' with '1' in its text."""
    if not key or ASCII_WHITESPACE.search(key):
        raise NbestError(f"utterance id {key!r} cannot be a Kaldi key: a key is non-empty and holds no space,"
                         " tab or newline (rename the utterance, or write jsonl)")
    return key


def write_cost_archive(costs: Iterable[tuple[str, float]], out: TextIO) -> None:
    """Text archive `key cost` (what `ark,t:` readers accept)."""
    for key, cost in costs:
        out.write(f"{kaldi_key(key)} {cost:.6f}\n")


def write_kaldi_text(texts: Iterable[tuple[str, str]], out: TextIO) -> None:
    for key, text in texts:
        out.write(f"{kaldi_key(key)} {text}\n" if text else f"{kaldi_key(key)}\n")
