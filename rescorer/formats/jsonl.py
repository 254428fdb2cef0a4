"""JSONL N-best lists: the project's interchange format and the HTTP API's utterance object.

One utterance per line:
    {"utt_id": "u1", "ref": "optional reference",
     "hyps": [{"text": "...", "am_score": -12.3, "lm_score": -40.1, "any_other_score": -1.0}, ...]}

Records without `am_score` (the LibriSpeech ESPnet lists carry `decoder`, `ctc`, `lm`) are read
through a ScoreMapping. Numeric fields other than text/am_score/lm_score are kept as named
scores; other fields (e.g. `tokens`, `rank`, `speaker`) are carried through unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from rescorer.formats.score_mapping import ScoreMapping
from rescorer.formats.text_files import open_text, parse_json
from rescorer.nbest import Hypothesis, NbestError, Utterance, check_utterance, normalize_text, parse_score

HYP_FIELDS = ("text", "am_score", "lm_score")
NOT_SCORES = ("rank", "first_pass_rank", "oov")  # numeric fields that are not log-domain scores


def parse_utterance(record: Any, where: str, mapping: ScoreMapping | None = None) -> Utterance:
    if not isinstance(record, dict):
        raise NbestError(f"{where}: expected a JSON object with 'utt_id' and 'hyps', found {type(record).__name__}")
    utt_id = record.get("utt_id")
    if not isinstance(utt_id, str) or not utt_id:
        raise NbestError(f"{where}: 'utt_id' must be a non-empty string, found {utt_id!r}")
    hyps = record.get("hyps")
    if not isinstance(hyps, list):
        raise NbestError(f"{where}: utterance {utt_id!r}: 'hyps' must be a list, found {type(hyps).__name__}")
    ref = record.get("ref")
    if ref is not None and not isinstance(ref, str):
        raise NbestError(f"{where}: utterance {utt_id!r}: 'ref' must be a string, found {ref!r}")
    parsed = [_parse_hyp(h, f"{where}: utterance {utt_id!r} hypothesis {n}", mapping)
              for n, h in enumerate(hyps, start=1)]
    extra = {k: v for k, v in record.items() if k not in ("utt_id", "hyps", "ref")}
    return check_utterance(Utterance(utt_id, parsed, None if ref is None else normalize_text(ref), extra), where)


def _parse_hyp(record: Any, where: str, mapping: ScoreMapping | None) -> Hypothesis:
    if not isinstance(record, dict):
        raise NbestError(f"{where}: expected an object with 'text' and scores, found {record!r}")
    text = record.get("text")
    if not isinstance(text, str):
        raise NbestError(f"{where}: 'text' must be a string, found {text!r}")
    scores: dict[str, float] = {}
    extra: dict[str, Any] = {}
    for key, value in record.items():
        if key in HYP_FIELDS:
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in NOT_SCORES:
            scores[key] = parse_score(value, key, where, strict=True)
        else:
            extra[key] = value
    if "am_score" in record:
        am = parse_score(record["am_score"], "am_score", where, strict=True)
        lm = None if record.get("lm_score") is None else parse_score(record["lm_score"], "lm_score", where, strict=True)
    elif mapping is not None:
        am, lm = mapping.apply(scores, where)
    else:
        raise NbestError(
            f"{where}: no 'am_score' (found fields {sorted(record)}); give a score mapping such as"
            " 'am=0.6*decoder+0.4*ctc,lm=lm'"
        )
    return Hypothesis(normalize_text(text), am, lm, scores, extra)


def read_jsonl(path: str | Path, mapping: ScoreMapping | None = None) -> list[Utterance]:
    return list(iter_jsonl(path, mapping))


def iter_jsonl(path: str | Path, mapping: ScoreMapping | None = None) -> Iterator[Utterance]:
    seen: set[str] = set()
    with open_text(path) as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            utt = parse_utterance(parse_json(line, where), where, mapping)
            if utt.utt_id in seen:
                raise NbestError(f"{where}: utterance {utt.utt_id!r} appears twice")
            seen.add(utt.utt_id)
            yield utt


def utterance_to_record(utt: Utterance) -> dict[str, Any]:
    """The record of an utterance. Fields carried through from the input (`extra`) never replace
    the record's own: an input field named `utt_id`, `text`, `nnlm_score` or `total` that is
    not the computed value is dropped, so a written score is always the one computed."""
    record: dict[str, Any] = {"utt_id": utt.utt_id}
    if utt.ref is not None:
        record["ref"] = utt.ref
    record["hyps"] = []
    for key, value in utt.extra.items():
        record.setdefault(key, value)
    for hyp in utt.hyps:
        h: dict[str, Any] = {"text": hyp.text, "am_score": hyp.am_score}
        if hyp.lm_score is not None:
            h["lm_score"] = hyp.lm_score
        h.update(hyp.scores)
        for key, value in hyp.extra.items():
            h.setdefault(key, value)
        record["hyps"].append(h)
    return record


def write_jsonl(utterances: Iterable[Utterance], out: TextIO) -> None:
    for utt in utterances:
        out.write(json.dumps(utterance_to_record(utt), ensure_ascii=False) + "\n")
