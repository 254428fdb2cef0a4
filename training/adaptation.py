"""Starting a run from an artifact: the init model, the in-domain vocabulary report, provenance.

`rescorer-train adapt` (paper 1, section 4) fine-tunes an existing self-normalized LM on
in-domain text, with plain NCE (gamma = 1, the paper's Fine-Tune) or NCE+KLD toward a frozen
reference (gamma < 1). The vocabulary, the architecture and the constant log_z are the init
artifact's: adaptation changes weights, never the words a model knows, so in-domain words
outside the vocabulary are counted and reported (they train `<unk>`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rescorer.artifact import Artifact, ArtifactError, load_artifact, read_artifact_config
from rescorer.model import LstmLanguageModel, ModelConfig
from rescorer.vocab import Vocabulary
from training.config import TrainConfig
from training.corpus import CorpusError, iter_sentences
from training.reference import ReferenceError, artifact_digest

ARCHITECTURE_FIELDS = ("embedding_dim", "hidden_dim", "num_layers", "projection_dim", "tie_weights")


def load_init(config: TrainConfig) -> Artifact:
    """The init artifact, checked against the run's configuration."""
    try:
        artifact = load_artifact(config.init_path)
    except ArtifactError as e:
        raise ReferenceError(f"--init: {e}") from None
    model_config = artifact.model.config
    if not artifact.model.is_self_normalized:
        raise ReferenceError(
            f"--init {config.init_path}: output kind {model_config.output_kind!r}; NCE adaptation"
            " continues a self_normalized model"
        )
    differing = [f"{name}: init {getattr(model_config, name)!r} vs run {getattr(config, name)!r}"
                 for name in ARCHITECTURE_FIELDS if getattr(model_config, name) != getattr(config, name)]
    if differing:
        raise ReferenceError(f"--init {config.init_path}: the run's architecture differs ({', '.join(differing)})")
    return artifact


def architecture_of(init_path: str) -> dict[str, Any]:
    """The init artifact's architecture as TrainConfig field values (for the adapt CLI)."""
    try:
        model = read_artifact_config(init_path)["model"]  # checked whole; the weights load in train
    except ArtifactError as e:
        raise ReferenceError(f"--init: {e}") from None
    return {name: model.get(name, getattr(ModelConfig, name, None)) for name in ARCHITECTURE_FIELDS}


def model_from_init(init: Artifact, dropout: float) -> LstmLanguageModel:
    """A trainable copy of the init model (its weights and log_z) with the run's dropout."""
    config: ModelConfig = replace(init.model.config, dropout=dropout)
    model = LstmLanguageModel(config, log_z=init.log_z)
    model.load_state_dict(init.model.state_dict())
    return model


@dataclass(frozen=True)
class VocabularyCoverage:
    tokens: int
    oov_tokens: int
    oov_types: int
    most_frequent_oov: list[tuple[str, int]]

    def describe(self, path: str, source: str) -> str:
        share = self.oov_tokens / max(self.tokens, 1)
        top = ", ".join(f"{w} ({n})" for w, n in self.most_frequent_oov)
        return (f"{path}: {self.oov_tokens} of {self.tokens} words ({share:.2%}, {self.oov_types} distinct)"
                f" are outside {source} vocabulary and train <unk>" + (f"; most frequent: {top}" if top else ""))


def vocabulary_coverage(path: str, vocab: Vocabulary) -> VocabularyCoverage:
    """Count the training words the vocabulary (the init's or the teachers') lacks; none known
    at all is an error."""
    oov: Counter[str] = Counter()
    tokens = 0
    for words in iter_sentences(path):
        tokens += len(words)
        oov.update(w for w in words if w not in vocab and w != vocab.unk_symbol)
    if tokens == 0:
        raise CorpusError(f"{path}: no words (empty corpus)")
    oov_tokens = sum(oov.values())
    if oov_tokens == tokens:
        raise CorpusError(f"{path}: none of its {tokens} words is in the vocabulary of the model it starts"
                          " from (wrong corpus, or text normalized differently from that model's?)")
    return VocabularyCoverage(tokens, oov_tokens, len(oov), oov.most_common(10))


def adaptation_provenance(config: TrainConfig, coverage: VocabularyCoverage | None,
                          init_dev: dict[str, Any] | None) -> dict[str, Any]:
    """What the artifact records about where it came from: init and reference by path and sha256."""
    def named(path: str | None) -> dict[str, str] | None:
        return None if path is None else {"path": str(Path(path)), "sha256": artifact_digest(path)}

    return {
        "init": named(config.init_path),
        "reference": named(config.reference_path),
        "gamma": config.gamma,
        "reference_temperature": config.reference_temperature,
        "reference_used": config.uses_reference,
        "in_domain_oov": None if coverage is None else {
            "tokens": coverage.tokens, "oov_tokens": coverage.oov_tokens, "oov_types": coverage.oov_types},
        "init_dev": init_dev,
    }
