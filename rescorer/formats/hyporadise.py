"""HyPoradise JSON lists: a JSON array of {"input": [hyps], "output": ref, "am_score"|"score": [..]}.

The scores, where present, are length-normalized sequence log-probabilities of an end-to-end
model (natural log, higher is better); they become `am_score`. Files without scores (8 of the
10 test domains) give every hypothesis am_score 0.0, so the LM alone ranks them: a documented
rule, reported by `scored=False` on each utterance's extra fields.
"""

from __future__ import annotations

from pathlib import Path

from rescorer.formats.text_files import open_text, parse_json
from rescorer.nbest import Hypothesis, NbestError, Utterance, check_utterance, normalize_text, parse_score


def read_hyporadise(path: str | Path) -> list[Utterance]:
    with open_text(path) as f:
        records = parse_json(f.read(), str(path))
    if not isinstance(records, list):
        raise NbestError(f"{path}: expected a JSON array of records, found {type(records).__name__}")
    utterances, seen = [], set()
    for i, record in enumerate(records):
        where = f"{path}: record {i}"
        if not isinstance(record, dict) or not isinstance(record.get("input"), list):
            raise NbestError(f"{where}: expected an object with an 'input' list of hypotheses")
        texts = record["input"]
        if not all(isinstance(t, str) for t in texts):
            raise NbestError(f"{where}: every 'input' entry must be a string")
        score_key = "am_score" if "am_score" in record else "score" if "score" in record else None
        if score_key is None:
            scores = [0.0] * len(texts)
        else:
            raw = record[score_key]
            if not isinstance(raw, list) or len(raw) != len(texts):
                raise NbestError(f"{where}: '{score_key}' must be a list of {len(texts)} numbers, found {raw!r}")
            scores = [parse_score(v, score_key, where, strict=True) for v in raw]
        utt_id = str(record.get("id", f"utt{i:06d}"))
        if utt_id in seen:
            raise NbestError(f"{where}: id {utt_id!r} appears twice")
        seen.add(utt_id)
        ref = record.get("output")
        if ref is not None and not isinstance(ref, str):
            raise NbestError(f"{where}: 'output' (the reference) must be a string, found {ref!r}")
        hyps = [Hypothesis(normalize_text(t), s) for t, s in zip(texts, scores, strict=True)]
        utterances.append(check_utterance(
            Utterance(utt_id, hyps, None if ref is None else normalize_text(ref), {"scored": score_key is not None}),
            where))
    return utterances
