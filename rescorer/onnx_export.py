"""ONNX export of an artifact: graphs that onnxruntime, sherpa-onnx and other C++ runtimes load.

`export_onnx(artifact, OUT.onnx)` writes the sentence-scoring graph that sherpa-onnx's offline
RNN LM runs (the signature of icefall's RnnLmModel export):

    x       int64 (N, L)  token ids, padded on the right, without <s> and </s>
    x_lens  int64 (N,)    each row's length
    nll     float (N,)    -ln P(x_1 .. x_len </s>): the sentence's negative log-probability

The graph feeds <s> and the row's tokens, and scores each token and the end of sentence where
the row ends; positions past a row's length are masked. A self-normalized artifact's graph has
no softmax: one dot product per token (the target's output row and bias) minus the constant
log_z, as `rescorer score` computes it; a softmax or mixture-of-softmaxes artifact is normalized
in the graph. With `streaming=True` the state-passing form is written instead (sherpa-onnx's
online RNN LM):

    x       int64 (N, L)       token ids fed after the state
    h0, c0  float (layers, N, H)  the LSTM state before them (zeros, then <s>, to start a sentence)
    log_probs      float (N, L, V)   ln P(. | history) after each token (self-normalized: o - log_z)
    next_h0, next_c0              the state after the last token

The metadata are the keys sherpa-onnx reads (`num_layers`, `hidden_size`, `sos_id`) and more
(`eos_id`, `vocab_size`, `output_kind`, `log_z`, `unit`, the tokenizer's sha256); the token
table is written beside the graph as `tokens.txt` (`token id` per line, as icefall and
sherpa-onnx name it). `Artifact.token_ids(text)` gives the ids `x` takes for a sentence.

The graph is traced by PyTorch's TorchScript-based exporter (opset 17), which needs no extra
package; onnx (for the metadata) and onnxruntime (to check the graph) are the `[onnx]` extra.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from rescorer.artifact import Artifact
from rescorer.atomic import atomic_file, write_text_atomic
from rescorer.errors import InputError

OPSET = 17
TOKENS_FILE = "tokens.txt"


class OnnxExportError(InputError):
    pass


class SentenceNll(nn.Module):
    """(x, x_lens) -> nll, as described in the module docstring."""

    def __init__(self, artifact: Artifact) -> None:
        super().__init__()
        self.model = artifact.model
        self.bos, self.eos = artifact.vocab.bos_id, artifact.vocab.eos_id

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> torch.Tensor:
        n, length = x.shape[0], x.shape[1]
        inputs = torch.cat([torch.full_like(x[:, :1], self.bos), x], dim=1)  # (N, L + 1)
        positions = torch.arange(length + 1, device=x.device).unsqueeze(0)  # (1, L + 1)
        # targets: the tokens, then </s> at each row's end; past it, any valid id (masked below)
        padded = torch.cat([x, torch.full_like(x[:, :1], self.eos)], dim=1)
        targets = torch.where(positions == x_lens.unsqueeze(1), torch.full_like(padded, self.eos), padded)
        mask = positions <= x_lens.unsqueeze(1)
        features, _ = self.model.features(inputs, _zero_state(self.model, n, x))
        log_probs = self.model.log_prob_of(features, targets)  # (N, L + 1): no softmax when self-normalized
        return -(log_probs * mask.to(log_probs.dtype)).sum(1)


class StreamingStep(nn.Module):
    """(x, h0, c0) -> (log_probs, next_h0, next_c0)."""

    def __init__(self, artifact: Artifact) -> None:
        super().__init__()
        self.model = artifact.model

    def forward(self, x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor):
        features, (h, c) = self.model.features(x, (h0, c0))
        if self.model.is_self_normalized:
            log_probs = self.model.logits(features) - self.model.log_z
        else:
            log_probs = self.model.log_probs(features)
        return log_probs, h, c


def _zero_state(model, n, like: torch.Tensor):
    config = model.config
    zeros = torch.zeros(config.num_layers, n, config.hidden_dim, dtype=model.output_bias.weight.dtype,
                        device=like.device)
    return zeros, zeros


def metadata(artifact: Artifact) -> dict[str, str]:
    config = artifact.model.config
    values = {
        "model_type": "rnnlm", "model_author": "nbest-rescorer", "num_layers": config.num_layers,
        "hidden_size": config.hidden_dim, "sos_id": artifact.vocab.bos_id, "eos_id": artifact.vocab.eos_id,
        "vocab_size": len(artifact.vocab), "output_kind": config.output_kind, "log_z": repr(artifact.log_z),
        "unit": artifact.unit, "comment": "x (N, L) without <s> and </s>; nll = -ln P(x </s>)",
    }
    if artifact.tokenizer is not None:
        values["tokenizer_sha256"] = artifact.tokenizer.sha256
    return {k: str(v) for k, v in values.items()}


def export_onnx(artifact: Artifact, out: str | Path, streaming: bool = False) -> Path:
    """Write the graph to `out` and `tokens.txt` beside it; returns the graph's path."""
    try:
        import onnx
    except ImportError:  # pragma: no cover - the [onnx] extra installs it
        raise OnnxExportError("export-onnx needs onnx: pip install 'nbest-rescorer[onnx]'") from None
    out = Path(out)
    if out.suffix != ".onnx":
        raise OnnxExportError(f"{out}: the graph's name must end in .onnx")
    model = artifact.model.to("cpu").float().eval()
    config = model.config
    if streaming:
        module: nn.Module = StreamingStep(artifact)
        state = torch.zeros(config.num_layers, 2, config.hidden_dim)
        example = (torch.tensor([[artifact.vocab.bos_id], [artifact.vocab.bos_id]]), state, state)
        names = (["x", "h0", "c0"], ["log_probs", "next_h0", "next_c0"])
        axes = {"x": {0: "N", 1: "L"}, "h0": {1: "N"}, "c0": {1: "N"}, "log_probs": {0: "N", 1: "L"},
                "next_h0": {1: "N"}, "next_c0": {1: "N"}}
    else:
        module = SentenceNll(artifact)
        example = (torch.tensor([[3, 4, 5], [3, 4, 3]]) % len(artifact.vocab), torch.tensor([3, 2]))
        names = (["x", "x_lens"], ["nll"])
        axes = {"x": {0: "N", 1: "L"}, "x_lens": {0: "N"}, "nll": {0: "N"}}
    with atomic_file(out) as tmp, torch.no_grad(), warnings.catch_warnings():
        # the TorchScript exporter's notices (its deprecation; a batch-size caveat that the zero
        # state built from x's shape answers): the tests check the graph at other batch sizes
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, str(tmp), input_names=names[0], output_names=names[1],
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False)
        graph = onnx.load(str(tmp))
        for key, value in metadata(artifact).items():
            entry = graph.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(graph, str(tmp))
    write_text_atomic(out.parent / TOKENS_FILE, "".join(f"{w} {i}\n" for i, w in enumerate(artifact.vocab.words)))
    return out
