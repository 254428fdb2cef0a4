"""One entry point for every N-best input format, used by the CLI and the evaluation jobs.

Formats (`--format`, inferred when omitted):
- `jsonl`       FILE.jsonl[.gz]                         (inferred from the name)
- `espnet`      DECODE_DIR with {k}best_recog/           (inferred from the layout)
- `hyporadise`  FILE.json[.gz]                          (inferred from the name)
- `kaldi`       DIR with `words_text` (or `words` + --symbols), `acwt`, and `lmwt.withlm`
                (the names steps/rnnlmrescore.sh gives nbest-to-linear's outputs), text or binary
- `kaldi-lattice` FILE: the CompactLattice text archive of lattice-to-nbest
References (`ref`): a Kaldi `text` file or an sclite `.trn` file; they replace references in
the input where both exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rescorer.formats.espnet import read_espnet_decode_dir
from rescorer.formats.hyporadise import read_hyporadise
from rescorer.formats.jsonl import read_jsonl
from rescorer.formats.kaldi import read_compact_lattice_nbest, read_kaldi_nbest, read_kaldi_text
from rescorer.formats.score_mapping import LIBRISPEECH_ESPNET, ScoreMapping, parse_score_mapping
from rescorer.formats.trn import read_trn
from rescorer.nbest import NbestError, Utterance
from rescorer.vocab import read_symbol_table

FORMATS = ("jsonl", "espnet", "hyporadise", "kaldi", "kaldi-lattice")


@dataclass(frozen=True)
class NbestSource:
    path: str
    format: str | None = None  # None: infer
    ref: str | None = None
    score_mapping: str | None = None  # e.g. "am=0.6*decoder+0.4*ctc,lm=lm"
    symbols: str | None = None  # words.txt for integer word ids


def infer_format(path: str | Path) -> str:
    path = Path(path)
    name = path.name.lower()
    if path.is_dir():
        if (path / "1best_recog").is_dir() or (path / "raw_hypotheses").is_dir():
            return "espnet"
        if (path / "acwt").exists():
            return "kaldi"
        raise NbestError(f"{path}: cannot tell the format of this directory; give --format")
    if name.endswith((".jsonl", ".jsonl.gz")):
        return "jsonl"
    if name.endswith((".json", ".json.gz")):
        return "hyporadise"
    raise NbestError(f"{path}: cannot tell the format from the name; give --format (one of {', '.join(FORMATS)})")


def read_references(path: str | Path) -> dict[str, str]:
    return read_trn(path) if str(path).endswith(".trn") else read_kaldi_text(path)


def read_nbest(source: NbestSource) -> list[Utterance]:
    """Every utterance of the source, checked; an input with none is an error naming it."""
    utterances = _read(source)
    if not utterances:
        raise NbestError(f"{source.path}: no utterances (an empty file or directory?)")
    return utterances


def _read(source: NbestSource) -> list[Utterance]:
    fmt = source.format or infer_format(source.path)
    if fmt not in FORMATS:
        raise NbestError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    refs = read_references(source.ref) if source.ref else None
    mapping: ScoreMapping | None = parse_score_mapping(source.score_mapping) if source.score_mapping else None
    symbols = read_symbol_table(source.symbols) if source.symbols else None
    if fmt == "jsonl":
        utterances = read_jsonl(source.path, mapping)
    elif fmt == "espnet":
        utterances = read_espnet_decode_dir(source.path, mapping or LIBRISPEECH_ESPNET)
    elif fmt == "hyporadise":
        utterances = read_hyporadise(source.path)
    elif fmt == "kaldi-lattice":
        utterances = read_compact_lattice_nbest(source.path, symbols)
    else:
        root = Path(source.path)
        if not root.is_dir():
            raise NbestError(f"{root}: not a directory (expected a Kaldi N-best directory: words or words_text,"
                             " acwt, optionally lmwt.withlm)")
        words = root / "words_text" if (root / "words_text").exists() else root / "words"
        lm = root / "lmwt.withlm"
        utterances = read_kaldi_nbest(words, root / "acwt", lm if lm.exists() else None, symbols)
    if refs is not None:
        attach_references(utterances, refs, source.ref)
    return utterances


def attach_references(utterances: list[Utterance], refs: dict[str, str], where: str) -> None:
    """Give every utterance its reference from `refs` (replacing one the input carried); the one
    place references from a file meet N-best lists. Every utterance must have one."""
    for utt in utterances:
        if utt.utt_id not in refs:
            raise NbestError(f"{where}: no reference for utterance {utt.utt_id!r}")
        utt.ref = refs[utt.utt_id]
