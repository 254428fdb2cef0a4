"""The model artifact: a directory that the rescorer and server load without unpickling.

    LM_DIR/
      config.json        architecture, output kind, log_z, vocab hash, file hashes, provenance
      words.txt          Kaldi symbol table (`word id`)
      model.safetensors  weights (safetensors: no code runs on load)

config.json records the sha256 of the two other files, so a truncated, swapped or tampered
file is reported by name instead of producing a silently wrong model.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from rescorer.atomic import write_directory_atomic, write_text_atomic
from rescorer.model import LstmLanguageModel, ModelConfig
from rescorer.vocab import Vocabulary, VocabularyError, parse_symbol_table

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WORDS_FILE = "words.txt"
WEIGHTS_FILE = "model.safetensors"


class ArtifactError(ValueError):
    """An artifact directory that cannot be loaded; the message names the file at fault."""


@dataclass
class Artifact:
    model: LstmLanguageModel
    vocab: Vocabulary
    provenance: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def log_z(self) -> float:
        return float(self.model.log_z)


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
    }


def save_artifact(artifact: Artifact, path: str | Path) -> Path:
    """Write the artifact directory atomically (DESIGN.md section 2)."""
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
        hashes = {name: _sha256(tmp / name) for name in (WORDS_FILE, WEIGHTS_FILE)}
        document = _config_document(artifact, hashes)
        (tmp / CONFIG_FILE).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")

    write_directory_atomic(path, fill)
    artifact.path = path
    return path


def read_artifact_config(path: str | Path) -> dict[str, Any]:
    config_path = Path(path) / CONFIG_FILE
    if not Path(path).is_dir():
        raise ArtifactError(f"{path}: not a directory (expected an artifact directory)")
    try:
        document = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{config_path}: missing (is {path} an artifact directory?)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{config_path}: not valid JSON ({e})") from None
    if not isinstance(document, dict) or document.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{config_path}: expected format_version {FORMAT_VERSION}, found"
            f" {document.get('format_version') if isinstance(document, dict) else document!r}"
        )
    for key in ("model", "log_z", "vocab_sha256", "files"):
        if key not in document:
            raise ArtifactError(f"{config_path}: missing key {key!r}")
    return document


def load_artifact(path: str | Path, device: str | torch.device = "cpu") -> Artifact:
    """Load and verify an artifact; never unpickles. Raises ArtifactError naming the bad file."""
    path = Path(path)
    document = read_artifact_config(path)
    config_path = path / CONFIG_FILE
    for name in (WORDS_FILE, WEIGHTS_FILE):
        file_path = path / name
        if not file_path.is_file():
            raise ArtifactError(f"{file_path}: missing")
        expected = document["files"].get(name)
        if expected is not None and _sha256(file_path) != expected:
            raise ArtifactError(
                f"{file_path}: sha256 does not match the one recorded in {config_path}"
                " (truncated, replaced or modified after it was written)"
            )
    try:
        model_config = ModelConfig(**document["model"])
    except (TypeError, ValueError) as e:
        raise ArtifactError(f"{config_path}: invalid 'model' section: {e}") from None
    try:
        vocab = parse_symbol_table(
            (path / WORDS_FILE).read_text(encoding="utf-8"), str(path / WORDS_FILE),
            document.get("unk_symbol", "<unk>"),
        )
    except (VocabularyError, UnicodeDecodeError) as e:
        raise ArtifactError(str(e)) from None
    if vocab.sha256 != document["vocab_sha256"] or len(vocab) != model_config.vocab_size:
        raise ArtifactError(
            f"{path / WORDS_FILE}: vocabulary ({len(vocab)} words) does not match {config_path}"
            f" (vocab_size {model_config.vocab_size}, vocab_sha256 {document['vocab_sha256'][:12]}...)"
        )
    log_z = float(document["log_z"])
    if not math.isfinite(log_z):
        raise ArtifactError(f"{config_path}: log_z must be finite, found {document['log_z']!r}")
    model = LstmLanguageModel(model_config, log_z=log_z)
    try:
        state = load_file(str(path / WEIGHTS_FILE))
    except (SafetensorError, OSError) as e:
        raise ArtifactError(f"{path / WEIGHTS_FILE}: cannot read safetensors ({e})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ArtifactError(f"{path / WEIGHTS_FILE}: tensors do not fit the config: {e}") from None
    model.to(device).eval()
    return Artifact(model, vocab, document.get("provenance", {}), path)


def set_rescoring_weights(path: str | Path, weights: dict[str, float], source: str) -> None:
    """Record tuned combination weights in config.json's provenance (the service's defaults
    for this model); atomic, touches nothing else."""
    document = read_artifact_config(path)
    document.setdefault("provenance", {})["rescoring_weights"] = {**weights, "tuned_by": source}
    write_text_atomic(Path(path) / CONFIG_FILE, json.dumps(document, indent=2) + "\n")


def set_log_z(path: str | Path, log_z: float, note: dict[str, Any] | None = None) -> None:
    """Rewrite only config.json with a new constant log_z (re-centering); atomic."""
    document = read_artifact_config(path)
    document["log_z"] = float(log_z)
    if note:
        document.setdefault("provenance", {}).setdefault("recentering", []).append(note)
    write_text_atomic(Path(path) / CONFIG_FILE, json.dumps(document, indent=2) + "\n")
