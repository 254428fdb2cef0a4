"""The model artifact: a directory that the rescorer and server load without unpickling.

    LM_DIR/
      config.json        architecture, output kind, log_z, vocab hash, file hashes, provenance
      words.txt          Kaldi symbol table (`word id`)
      model.safetensors  weights (safetensors: no code runs on load)
      tokenizer.model    subword artifacts only: the sentencepiece model (rescorer/subword.py);
                         words.txt then lists its pieces

config.json records the sha256 of the two other files, so a truncated, swapped or tampered
file is reported by name instead of producing a silently wrong model.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from rescorer.atomic import write_directory_atomic, write_text_atomic
from rescorer.bounded_read import read_text_bounded
from rescorer.combination import Weights
from rescorer.errors import InputError
from rescorer.model import LstmLanguageModel, ModelConfig
from rescorer.precision import check_precision, resolve_precision, set_precision
from rescorer.subword import MAX_TOKENIZER_BYTES, TOKENIZER_FILE, SubwordTokenizer, TokenizerError
from rescorer.vocab import Vocabulary, VocabularyError, parse_symbol_table
from rescorer.words import split_words

FORMAT_VERSION = 2  # 2: config.json holds the sha256 of its own other keys (config_sha256)
READABLE_VERSIONS = (1, 2)  # 1: written by earlier releases, without that hash
CONFIG_FILE = "config.json"
WORDS_FILE = "words.txt"
WEIGHTS_FILE = "model.safetensors"


class ArtifactError(InputError):
    """An artifact directory that cannot be loaded; the message names the file at fault."""


@dataclass
class Artifact:
    model: LstmLanguageModel
    vocab: Vocabulary
    provenance: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    tokenizer: SubwordTokenizer | None = None  # None: the LM's tokens are words

    @property
    def log_z(self) -> float:
        return float(self.model.log_z)

    @property
    def unit(self) -> str:
        """What the LM's tokens are: `word` or `piece`."""
        return "word" if self.tokenizer is None else "piece"

    def tokens(self, words: Sequence[str]) -> list[str]:
        """The LM's tokens of a sentence given as words: the words, or their subword pieces."""
        return list(words) if self.tokenizer is None else self.tokenizer.pieces(words)

    def token_ids(self, text: str | Sequence[str]) -> list[int]:
        """The ids the LM (and its ONNX export, `x`) takes for a sentence, without `<s>` and `</s>`:
        `text` is a string of words separated by whitespace, or a list of words."""
        words = split_words(text) if isinstance(text, str) else list(text)
        return self.vocab.encode(self.tokens(words))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _config_document(artifact: Artifact, file_hashes: dict[str, str]) -> dict[str, Any]:
    model = artifact.model
    return {
        "format_version": FORMAT_VERSION,
        "model": model.config.to_dict(),
        "output_kind": model.config.output_kind,
        "log_z": artifact.log_z,
        "vocab_size": len(artifact.vocab),
        "unk_symbol": artifact.vocab.unk_symbol,
        "vocab_sha256": artifact.vocab.sha256,
        "files": file_hashes,
        "provenance": artifact.provenance,
    } | ({"tokenizer": artifact.tokenizer.describe()} if artifact.tokenizer is not None else {})


def save_artifact(artifact: Artifact, path: str | Path) -> Path:
    """Write the artifact directory atomically (docs/ARCHITECTURE.md, section 2)."""
    path = Path(path)
    if len(artifact.vocab) != artifact.model.config.vocab_size:
        raise ArtifactError(
            f"vocabulary has {len(artifact.vocab)} words but the model expects"
            f" {artifact.model.config.vocab_size}"
        )

    def fill(tmp: Path) -> None:
        (tmp / WORDS_FILE).write_text(artifact.vocab.to_text(), encoding="utf-8")
        state = {k: v.detach().to("cpu").contiguous() for k, v in artifact.model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        names = [WORDS_FILE, WEIGHTS_FILE]
        if artifact.tokenizer is not None:
            (tmp / TOKENIZER_FILE).write_bytes(artifact.tokenizer.model_bytes)
            names.append(TOKENIZER_FILE)
        hashes = {name: _sha256(tmp / name) for name in names}
        (tmp / CONFIG_FILE).write_text(_config_text(_config_document(artifact, hashes)), encoding="utf-8")

    write_directory_atomic(path, fill)
    artifact.path = path
    return path


def read_artifact_config(path: str | Path) -> dict[str, Any]:
    """config.json, checked whole (types, bounds, a hash for every file); ArtifactError otherwise."""
    config_path = Path(path) / CONFIG_FILE
    if not Path(path).exists():
        raise ArtifactError(f"{path}: no such artifact directory")
    if not Path(path).is_dir():
        raise ArtifactError(f"{path}: not a directory (expected an artifact directory)")
    try:
        document = json.loads(read_text_bounded(config_path))
    except FileNotFoundError:
        raise ArtifactError(f"{config_path}: missing (is {path} an artifact directory?)") from None
    except (ValueError, RecursionError) as e:  # JSON syntax, not UTF-8, an integer too long
        raise ArtifactError(f"{config_path}: not valid JSON ({str(e)[:200]})") from None
    except OSError as e:  # a symlink loop, a directory named config.json, no permission
        raise ArtifactError(f"{config_path}: cannot read ({e.strerror or e})") from None
    check_config_document(document, config_path)
    return document


def load_artifact(path: str | Path, device: str | torch.device = "cpu", precision: str = "fp32") -> Artifact:
    """Load and verify an artifact; never unpickles. Raises ArtifactError naming the bad file.
    `precision`: fp32, bf16, fp16 (CUDA) or auto for scoring (rescorer.precision)."""
    precision = resolve_precision(precision, torch.device(device))
    check_precision(precision, torch.device(device))  # a bad name fails before any reading
    path = Path(path)
    document = read_artifact_config(path)
    config_path = path / CONFIG_FILE
    for name in document["files"]:  # check_config_document: words, weights and the tokenizer if any
        file_path = path / name
        if file_path.exists() and not file_path.is_file():  # a device or FIFO never ends: hashing it would not either
            raise ArtifactError(f"{file_path}: not a regular file (a directory, device or pipe); expected the artifact's file")
        try:
            actual = _sha256(file_path)
        except OSError as e:
            raise ArtifactError(f"{file_path}: cannot read ({e.strerror or e})") from None
        if actual != document["files"][name]:
            raise ArtifactError(
                f"{file_path}: sha256 does not match the one recorded in {config_path}"
                " (truncated, replaced or modified after it was written)"
            )
    try:
        model_config = ModelConfig(**document["model"])
    except (TypeError, ValueError) as e:
        raise ArtifactError(f"{config_path}: invalid 'model' section: {e}") from None
    weights_bytes = (path / WEIGHTS_FILE).stat().st_size
    if parameter_count(model_config) * 4 > weights_bytes:  # before allocating anything
        raise ArtifactError(
            f"{config_path}: 'model' describes {parameter_count(model_config):,} parameters, more than"
            f" {path / WEIGHTS_FILE} holds ({weights_bytes:,} bytes)"
        )
    try:
        vocab = parse_symbol_table(
            read_text_bounded(path / WORDS_FILE), str(path / WORDS_FILE),
            document.get("unk_symbol", "<unk>"),
        )
    except (VocabularyError, UnicodeDecodeError) as e:
        raise ArtifactError(str(e)) from None
    except OSError as e:  # past the whole-file bound (rescorer.bounded_read), or unreadable since it was hashed
        raise ArtifactError(f"{path / WORDS_FILE}: cannot read ({e.strerror or e})") from None
    if vocab.sha256 != document["vocab_sha256"] or len(vocab) != model_config.vocab_size:
        raise ArtifactError(
            f"{path / WORDS_FILE}: vocabulary ({len(vocab)} words) does not match {config_path}"
            f" (vocab_size {model_config.vocab_size}, vocab_sha256 {document['vocab_sha256'][:12]}...)"
        )
    tokenizer = _load_tokenizer(path, vocab) if TOKENIZER_FILE in document["files"] else None
    model = LstmLanguageModel(model_config, log_z=float(document["log_z"]))
    try:
        state = load_file(str(path / WEIGHTS_FILE))
    except (SafetensorError, OSError) as e:
        raise ArtifactError(f"{path / WEIGHTS_FILE}: cannot read safetensors ({e})") from None
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ArtifactError(f"{path / WEIGHTS_FILE}: tensor {name!r} holds NaN or infinite values")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ArtifactError(f"{path / WEIGHTS_FILE}: tensors do not fit the config: {e}") from None
    model.to(device).eval()
    if precision != "fp32":
        set_precision(model, precision)
    return Artifact(model, vocab, document.get("provenance", {}), path, tokenizer)


def _load_tokenizer(path: Path, vocab: Vocabulary) -> SubwordTokenizer:
    """The artifact's sentencepiece model (its hash already checked), whose pieces must be words.txt's."""
    file_path = path / TOKENIZER_FILE
    if file_path.stat().st_size > MAX_TOKENIZER_BYTES:
        raise ArtifactError(f"{file_path}: {file_path.stat().st_size:,} bytes, more than a sentencepiece model"
                            f" holds ({MAX_TOKENIZER_BYTES:,})")
    try:
        tokenizer = SubwordTokenizer(file_path.read_bytes(), str(file_path))
        pieces = tokenizer.vocabulary()
    except TokenizerError as e:
        raise ArtifactError(str(e)) from None
    if pieces.words != vocab.words:
        raise ArtifactError(f"{path / WORDS_FILE}: does not list the pieces of {file_path} in their order"
                            f" ({len(vocab)} symbols against {len(pieces)})")
    return tokenizer


def set_rescoring_weights(path: str | Path, weights: dict[str, float], source: str) -> None:
    """Record tuned combination weights in config.json's provenance (the service's defaults
    for this model); atomic, touches nothing else."""
    document = read_artifact_config(path)
    document.setdefault("provenance", {})["rescoring_weights"] = {**weights, "tuned_by": source}
    write_text_atomic(Path(path) / CONFIG_FILE, _config_text(document))


def set_log_z(path: str | Path, log_z: float, note: dict[str, Any] | None = None) -> None:
    """Rewrite only config.json with a new constant log_z (re-centering); atomic."""
    document = read_artifact_config(path)
    document["log_z"] = float(log_z)
    if note:
        document.setdefault("provenance", {}).setdefault("recentering", []).append(note)
    write_text_atomic(Path(path) / CONFIG_FILE, _config_text(document))


def config_hash(document: dict[str, Any]) -> str:
    """sha256 of config.json's keys other than `config_sha256`, in a canonical JSON form."""
    rest = {k: v for k, v in document.items() if k != "config_sha256"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                          .encode("utf-8")).hexdigest()


def _config_text(document: dict[str, Any]) -> str:
    """config.json as written: the current format, with the hash of its own content."""
    document = {**document, "format_version": FORMAT_VERSION}
    document["config_sha256"] = config_hash(document)
    return json.dumps(document, indent=2) + "\n"


HEX64 = re.compile(r"[0-9a-f]{64}")
MAX_DIMENSION = 1 << 16  # embedding, hidden, projection sizes
MAX_VOCABULARY = 1 << 24
MAX_LAYERS, MAX_EXPERTS = 64, 256
INT_BOUNDS = {"vocab_size": (3, MAX_VOCABULARY), "embedding_dim": (1, MAX_DIMENSION),
              "hidden_dim": (1, MAX_DIMENSION), "num_layers": (1, MAX_LAYERS),
              "projection_dim": (1, MAX_DIMENSION), "experts": (1, MAX_EXPERTS)}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_config_document(document: Any, config_path: Path) -> None:
    """Every key config.json may hold, with its type and bounds; the first fault is named."""
    def fail(what: str) -> None:
        raise ArtifactError(f"{config_path}: {what}")

    if not isinstance(document, dict):
        fail(f"expected a JSON object, found {type(document).__name__}")
    version = document.get("format_version")
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        fail(f"expected format_version {' or '.join(map(str, READABLE_VERSIONS))}, found {version!r}")

    for key in ("model", "log_z", "vocab_sha256", "files"):
        if key not in document:
            fail(f"missing key {key!r}")
    model = document["model"]
    if not isinstance(model, dict):
        fail(f"'model' must be an object, found {type(model).__name__}")
    for key, (low, high) in INT_BOUNDS.items():
        value = model.get(key)
        if value is None and key in ("projection_dim", "experts"):
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            fail(f"'model.{key}' must be an integer in [{low}, {high}], found {value!r}")
    if not _is_number(model.get("dropout", 0.0)) or not 0.0 <= model.get("dropout", 0.0) < 1.0:
        fail(f"'model.dropout' must be a number in [0, 1), found {model.get('dropout')!r}")
    if not isinstance(model.get("tie_weights", False), bool):
        fail(f"'model.tie_weights' must be true or false, found {model.get('tie_weights')!r}")
    if not _is_number(document["log_z"]):
        fail(f"'log_z' must be a finite number, found {document['log_z']!r}")
    if not isinstance(document["vocab_sha256"], str) or not HEX64.fullmatch(document["vocab_sha256"]):
        fail(f"'vocab_sha256' must be 64 hex digits, found {document['vocab_sha256']!r}")
    files = document["files"]
    subword = "tokenizer" in document
    expected = {WORDS_FILE, WEIGHTS_FILE} | ({TOKENIZER_FILE} if subword else set())
    if not isinstance(files, dict) or set(files) != expected:
        fail(f"'files' must map exactly {', '.join(sorted(expected))} to their sha256, found {files!r}")
    if subword:
        described = document["tokenizer"]
        if not isinstance(described, dict) or described.get("kind") != "sentencepiece" \
                or described.get("sha256") != files[TOKENIZER_FILE]:
            fail(f"'tokenizer' must describe the sentencepiece model {TOKENIZER_FILE} with its sha256,"
                 f" found {described!r}")
    for name, digest in files.items():
        if not isinstance(digest, str) or not HEX64.fullmatch(digest):
            fail(f"'files.{name}' must be 64 hex digits, found {digest!r}")
    if not isinstance(document.get("unk_symbol", "<unk>"), str):
        fail(f"'unk_symbol' must be a string, found {document.get('unk_symbol')!r}")
    provenance = document.get("provenance", {})
    if not isinstance(provenance, dict):
        fail(f"'provenance' must be an object, found {type(provenance).__name__}")
    tuned = provenance.get("rescoring_weights")
    if tuned is not None:
        if not isinstance(tuned, dict):
            fail(f"'provenance.rescoring_weights' must be an object, found {type(tuned).__name__}")
        for name, value in tuned.items():
            if name != "tuned_by" and (problem := Weights.problem(name, value)) is not None:
                fail(f"'provenance.rescoring_weights.{name}': {problem}")
    if version >= 2 and document.get("config_sha256") != config_hash(document):
        fail("edited after it was written (its content does not match its config_sha256); an artifact's"
             " files change only through the tools (rescorer set-weights, rescorer-train evaluate --recenter)")


def parameter_count(config: ModelConfig) -> int:
    """The number of weights a config describes (computed, not allocated)."""
    V, E, H, D = config.vocab_size, config.embedding_dim, config.hidden_dim, config.feature_dim
    lstm = sum(4 * H * ((E if layer == 0 else H) + H + 2) for layer in range(config.num_layers))
    projection = (H + 1) * config.projection_dim if config.projection_dim else 0
    output = (0 if config.tie_weights else V * D) + V
    mixture = D * config.experts + D * D * config.experts if config.output_kind == "mos" else 0
    return V * E + lstm + projection + output + mixture
