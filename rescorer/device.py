"""Choosing the torch device from a user's string: one rule for the CLIs, the trainer and the service."""

from __future__ import annotations

import torch

from rescorer.errors import ConfigError


def pick_device(requested: str, local_rank: int = 0) -> torch.device:
    """'auto' (CUDA when present, else CPU), 'cpu', 'cuda' (this process's GPU, `local_rank`
    under data parallelism) or 'cuda:N'; CUDA asked for but absent, or a name torch does not
    know, is a ConfigError."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {requested!r} requested but CUDA is not available")
    if requested == "cuda":
        return torch.device("cuda", local_rank)
    try:
        return torch.device(requested)
    except RuntimeError:
        raise ConfigError(f"unknown device {requested!r}; expected auto, cpu, cuda or cuda:N") from None
