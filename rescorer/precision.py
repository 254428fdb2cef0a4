"""The arithmetic a loaded model scores in: `fp32` (the default), `bf16`, `fp16` (CUDA only).

Reduced precision applies where the time and the memory go: the input embedding, the LSTM and
the projection compute in bf16 (or fp16), and the output rows u_w are held in it. The rest
stays fp32: the biases b_w (a bias near -10 held in bf16 would be off by up to 0.03 nats per
token), a mixture of softmaxes' prior and experts, the features handed to the output layer,
and the dot product of each feature vector with its gathered row (read back as fp32).
Per-token log-probabilities are summed in float64 (rescorer.sentence_scoring). What this costs in accuracy and buys in speed
is measured by bench/precision.py (docs/RESULTS.md, "Reduced precision").

On CPU, bf16 pays where the CPU has native bf16 arithmetic (AVX-512 BF16, AMX); fp16 is CUDA
only (no CPU kernels worth having).
"""

from __future__ import annotations

import torch

from rescorer.errors import ConfigError
from rescorer.model import LstmLanguageModel

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def native_bf16(device: torch.device) -> bool:
    """Whether `device` has bf16 arithmetic in hardware: a CUDA device of compute capability 8
    or more, or a CPU with AVX-512 BF16 or AMX (as PyTorch detects them)."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8
    cpu = torch.cpu
    return any(getattr(cpu, probe, lambda: False)() for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto`: bf16 where the device has it in hardware, else fp32; any other name as given."""
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "fp32"


def check_precision(precision: str, device: torch.device) -> torch.dtype:
    """The dtype of `precision` on `device`; ConfigError for an unknown name or fp16 on CPU."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; expected auto or one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("precision fp16 is for CUDA devices; on CPU use bf16 (or fp32)")
    return PRECISIONS[precision]


def set_precision(model: LstmLanguageModel, precision: str) -> LstmLanguageModel:
    """Cast `model` (in place) to `precision` as the module docstring says."""
    dtype = check_precision(precision, model.device)
    for module in (model.embedding, model.lstm, model.projection, model.output_embedding):
        if module is not None:
            module.to(dtype)
    model.precision = precision
    return model


def precision_of(model: LstmLanguageModel) -> str:
    return getattr(model, "precision", "fp32")


def weight_bytes(model: LstmLanguageModel) -> int:
    """Bytes of the model's parameters as they are held now (resident weights)."""
    return sum(p.numel() * p.element_size() for p in model.parameters())
