"""Subword units: a sentencepiece model that cuts words into the pieces a subword LM predicts.

An artifact with a tokenizer stores the sentencepiece model beside its weights
(`tokenizer.model`, the model's serialized protocol buffer: data, not code, so loading it runs
nothing) with its sha256 in config.json, and its `words.txt` lists the pieces: `<s>`, `</s>`,
`<unk>` (sentencepiece's own unknown piece), then every other piece in sentencepiece's id
order. A sentence's words are joined by spaces and cut by the model (`pieces`); the LM then
scores the pieces and the end of sentence, so every log-probability is a sum over pieces.

The pieces are learned on the training text (`train_sentencepiece`: BPE or unigram,
--subword-units N pieces, every character of the text covered), or taken from an existing
model (`--sentencepiece-model`, e.g. the recognizer's own `bpe.model`). Where N is at least
BYTE_FALLBACK_MIN_UNITS the model also gets sentencepiece's 256 byte pieces, so that a character
the training text never had (a `-` or `$` in a recognizer's output that the LM's text lacks) is
spelled in bytes instead of becoming `<unk>`; below that the byte pieces would crowd out the
real ones, and an unseen character is `<unk>` (counted wherever `<unk>` words are).

sentencepiece is an optional dependency (`pip install '.[onnx]'`); word artifacts never need it.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rescorer.errors import InputError
from rescorer.vocab import BOS, EOS, UNK, Vocabulary

TOKENIZER_FILE = "tokenizer.model"
KINDS = ("bpe", "unigram")
BYTE_FALLBACK_MIN_UNITS = 384  # 256 byte pieces, the text's characters and merges in the rest
MAX_TOKENIZER_BYTES = 64 << 20  # a sentencepiece model of 1M pieces is about 20 MB


class TokenizerError(InputError):
    """A sentencepiece model that cannot be read or used; the message names the file."""


def _sentencepiece():
    try:
        import sentencepiece
    except ImportError:  # pragma: no cover - the [onnx] extra installs it
        raise TokenizerError("subword units need sentencepiece: pip install 'nbest-rescorer[onnx]'") from None
    return sentencepiece


@dataclass(frozen=True)
class SubwordTokenizer:
    """A sentencepiece model, from the bytes of its `.model` file."""

    model_bytes: bytes
    source: str = TOKENIZER_FILE  # where it was read from, for messages
    _processor: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        processor = _sentencepiece().SentencePieceProcessor()
        try:
            processor.LoadFromSerializedProto(self.model_bytes)
        except (RuntimeError, OSError, ValueError) as e:
            raise TokenizerError(f"{self.source}: not a sentencepiece model ({str(e)[:200]})") from None
        if processor.GetPieceSize() < 1 or processor.unk_id() < 0:
            raise TokenizerError(f"{self.source}: a sentencepiece model without an unknown piece cannot be used")
        object.__setattr__(self, "_processor", processor)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.model_bytes).hexdigest()

    @property
    def size(self) -> int:
        """The number of sentencepiece pieces (with its own control pieces)."""
        return self._processor.GetPieceSize()

    @property
    def kind(self) -> str:
        """bpe, unigram, word or char: the model's type as its trainer spec records it."""
        try:
            model_type = _model_proto(self.model_bytes).trainer_spec.model_type
        except ImportError:  # sentencepiece without protobuf: the pieces work, the type is not read
            return "unknown"
        return {1: "unigram", 2: "bpe", 3: "word", 4: "char"}.get(model_type, str(model_type))

    def pieces(self, words: Sequence[str]) -> list[str]:
        """The pieces of a sentence given as words (joined by single spaces first)."""
        if not words:
            return []
        sp = self._processor
        unk = sp.unk_id()
        return [UNK if i == unk else sp.IdToPiece(i) for i in sp.EncodeAsIds(" ".join(words))]

    def vocabulary(self) -> Vocabulary:
        """`<s>`, `</s>`, `<unk>`, then the model's pieces in its id order (control pieces left out)."""
        sp = self._processor
        pieces = [sp.IdToPiece(i) for i in range(sp.GetPieceSize())
                  if i != sp.unk_id() and not sp.IsControl(i)]
        clash = [p for p in pieces if p in (BOS, EOS, UNK)]
        if clash:
            raise TokenizerError(f"{self.source}: piece {clash[0]!r} is one of the LM's boundary symbols;"
                                 " train the model with bos_id=-1 eos_id=-1 (no boundary pieces)")
        return Vocabulary((BOS, EOS, UNK, *pieces), UNK)

    def describe(self) -> dict[str, Any]:
        return {"kind": "sentencepiece", "model_type": self.kind, "pieces": self.size, "sha256": self.sha256}


def _model_proto(model_bytes: bytes):
    from sentencepiece import sentencepiece_model_pb2  # needs protobuf, which onnx brings

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model_bytes)
    return proto


def train_sentencepiece(sentences: Iterable[Sequence[str]], units: int, kind: str = "bpe",
                        seed_sentences: int = 2_000_000) -> SubwordTokenizer:
    """A sentencepiece model of `units` pieces learned on the sentences (lists of words)."""
    if kind not in KINDS:
        raise TokenizerError(f"subword kind must be one of {', '.join(KINDS)}, got {kind!r}")
    spm = _sentencepiece()
    texts = [" ".join(words) for _, words in zip(range(seed_sentences), sentences, strict=False) if words]
    if not texts:
        raise TokenizerError("no words to learn subword pieces from (empty training text)")
    attempts = [True, False] if units >= BYTE_FALLBACK_MIN_UNITS else [False]
    for byte_fallback in attempts:
        out = io.BytesIO()
        try:
            spm.SentencePieceTrainer.Train(
                sentence_iterator=iter(texts), model_writer=out, vocab_size=units, model_type=kind,
                character_coverage=1.0, byte_fallback=byte_fallback, bos_id=-1, eos_id=-1, pad_id=-1, unk_id=0,
                shuffle_input_sentence=False, num_threads=1, minloglevel=2,
                hard_vocab_limit=False,  # a text too small for N pieces gets fewer, not an error
            )
            break
        except RuntimeError as e:  # a text with more characters than N - 256 leaves no room for the bytes
            if byte_fallback:
                continue
            raise TokenizerError(f"sentencepiece could not learn {units} {kind} pieces: {str(e)[:300]}") from None
    return SubwordTokenizer(out.getvalue(), "the learned sentencepiece model")
