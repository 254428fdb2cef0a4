"""The models a service serves: loaded once at start-up, looked up by name, never by path.

`--model-dir DIR`: if DIR is itself an artifact (has config.json) it is served as one model
named after DIR; otherwise every subdirectory of DIR holding a config.json is a model named
after the subdirectory. A request names a model by that name only, so no request can make
the service open a path of its choosing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rescorer.artifact import CONFIG_FILE, Artifact, ArtifactError, load_artifact
from rescorer.sentence_scoring import score_sentences
from server.batching_choice import BatchingChoice, choose_batching

SELF_TEST = [["<s>"], []]  # an odd word and the empty sentence: both must score finitely


class UnknownModel(KeyError):
    pass


@dataclass
class Registry:
    models: dict[str, Artifact]
    device: torch.device
    batching: dict[str, BatchingChoice] = field(default_factory=dict)  # per model: batch across requests?

    def get(self, name: str | None) -> tuple[str, Artifact]:
        if name is None:
            if len(self.models) != 1:
                raise UnknownModel(f"several models are loaded ({', '.join(sorted(self.models))}); name one")
            name = next(iter(self.models))
        if name not in self.models:
            raise UnknownModel(f"no model named {name!r}; loaded: {', '.join(sorted(self.models))}")
        return name, self.models[name]


def load_registry(model_dir: Path, device: torch.device, precision: str = "fp32",
                  batch_tokens: int = 8192) -> Registry:
    """Every artifact under `model_dir`, loaded, self-tested, and with its batching choice
    measured (server/batching_choice.py)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ArtifactError(f"{model_dir}: model directory not found")
    if (model_dir / CONFIG_FILE).exists():
        paths = {model_dir.resolve().name: model_dir}
    else:
        paths = {p.name: p for p in sorted(model_dir.iterdir()) if (p / CONFIG_FILE).is_file()}
    if not paths:
        raise ArtifactError(f"{model_dir}: no artifact (config.json) in it or in its subdirectories")
    models, batching = {}, {}
    for name, path in paths.items():
        artifact = load_artifact(path, device=device, precision=precision)
        self_test(name, artifact)
        models[name] = artifact
        batching[name] = choose_batching(artifact, device, batch_tokens)
    return Registry(models, device, batching)


def self_test(name: str, artifact: Artifact) -> None:
    scores = score_sentences(artifact, SELF_TEST)
    if not all(math.isfinite(x) and x < 0 for x in scores.log_probs):
        raise ArtifactError(f"model {name!r} failed its self-test: sentence scores {scores.log_probs.tolist()}")
