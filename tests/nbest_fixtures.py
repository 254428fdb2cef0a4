"""Tiny N-best lists and an LM artifact built in code, shared by the rescoring tests."""

from __future__ import annotations

import torch

from rescorer.artifact import Artifact
from rescorer.model import LstmLanguageModel, ModelConfig
from rescorer.nbest import Hypothesis, Utterance
from rescorer.vocab import build_vocabulary

WORDS = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "far", "away"]


def tiny_artifact(output_kind: str = "self_normalized", seed: int = 0) -> Artifact:
    torch.manual_seed(seed)
    vocab = build_vocabulary({w: 10 - i for i, w in enumerate(WORDS)})
    model = LstmLanguageModel(ModelConfig(vocab_size=len(vocab), embedding_dim=16, hidden_dim=16, num_layers=2,
                                          dropout=0.0, output_kind=output_kind)).eval()
    return Artifact(model, vocab, {"loss": "test"})


def tiny_utterances() -> list[Utterance]:
    return [
        Utterance("u1", [Hypothesis("the cat sat on the mat", -10.0, -20.0),
                         Hypothesis("the cat sat on a mat", -9.5, -21.0),
                         Hypothesis("the cat sat", -12.0, -15.0)], ref="the cat sat on the mat"),
        Utterance("u2", [Hypothesis("a dog ran far away", -8.0, -18.0),
                         Hypothesis("a dog ran away", -8.2, -16.0),
                         Hypothesis("", -30.0, -2.0)], ref="a dog ran far away"),
    ]
