"""ESPnet decode directories: `{k}best_recog/{text,score,scores}` for k = 1..N.

`text` is `utt-id words`, `score` is `utt-id tensor(x)` (the beam score), `scores` is
`utt-id {"decoder": "tensor(x)", "ctc": ..., "lm": ...}`. The named scores become
`am_score`/`lm_score` through a ScoreMapping (default: the LibriSpeech decode's
`am=0.6*decoder+0.4*ctc,lm=lm`; ESPnet decode weights vary, so say yours).
"""

from __future__ import annotations

import re
from pathlib import Path

from rescorer.formats.score_mapping import LIBRISPEECH_ESPNET, ScoreMapping
from rescorer.formats.text_files import parse_json, read_keyed_lines
from rescorer.nbest import Hypothesis, NbestError, Utterance, check_utterance, normalize_text, parse_score

_TENSOR = re.compile(r"^tensor\((?P<v>[^,)]+)(?:,.*)?\)$")
_KBEST = re.compile(r"^(\d+)best_recog$")


def _number(text: str, where: str, name: str) -> float:
    text = text.strip()
    match = _TENSOR.match(text)
    return parse_score(match.group("v") if match else text, name, where)


def read_espnet_decode_dir(
    path: str | Path, mapping: ScoreMapping = LIBRISPEECH_ESPNET) -> list[Utterance]:
    root = Path(path)
    if (root / "raw_hypotheses").is_dir():
        root = root / "raw_hypotheses"
    if not root.is_dir():
        raise NbestError(f"{path}: not a directory (expected an ESPnet decode dir with 1best_recog/ ...)")
    ks = sorted(int(m.group(1)) for d in root.iterdir() if (m := _KBEST.match(d.name)))
    if not ks:
        raise NbestError(f"{root}: no {{k}}best_recog directories")
    if ks != list(range(1, len(ks) + 1)):
        raise NbestError(f"{root}: {{k}}best_recog directories must run 1..N, found {ks}")
    hyps: dict[str, list[Hypothesis]] = {}
    order: list[str] = []
    for k in ks:
        d = root / f"{k}best_recog"
        texts, scores = read_keyed_lines(d / "text"), read_keyed_lines(d / "scores")
        beam = read_keyed_lines(d / "score") if (d / "score").exists() else {}
        if set(texts) != set(scores):
            only = sorted(set(texts) ^ set(scores))[0]
            raise NbestError(f"{d}: utterance {only!r} is in only one of text and scores")
        for utt, text in texts.items():
            where = f"{d}/scores: utterance {utt!r}"
            named_raw = parse_json(scores[utt], where, "a JSON object of scores")
            if not isinstance(named_raw, dict):
                raise NbestError(f"{where}: expected a JSON object of scores, found {named_raw!r}")
            named = {name: _number(str(v), where, name) for name, v in named_raw.items()}
            if utt in beam:
                named["score"] = _number(beam[utt], f"{d}/score: utterance {utt!r}", "score")
            am, lm = mapping.apply(named, where)
            if utt not in hyps:
                if k != 1:
                    raise NbestError(f"{d}: utterance {utt!r} has a {k}-best but no 1-best")
                hyps[utt] = []
                order.append(utt)
            elif len(hyps[utt]) != k - 1:
                raise NbestError(f"{d}: utterance {utt!r} has a {k}-best but no {k - 1}-best")
            hyps[utt].append(Hypothesis(normalize_text(text), am, lm, named))
    return [check_utterance(Utterance(utt, hyps[utt]), str(root)) for utt in order]
