"""Training checkpoints: written atomically, read with torch.load(weights_only=True).

A checkpoint holds tensors and plain Python values only (configs as dicts), so loading it
runs no pickled code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rescorer.atomic import atomic_file
from rescorer.errors import InputError


class CheckpointError(InputError):
    pass


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    with atomic_file(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint to resume from")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several unrelated types for a damaged file
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(e).__name__}: {e})") from None
    expected = {"format": int, "config": dict, "model": dict, "schedule": dict, "history": list, "vocab_sha256": str}
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: not a checkpoint of this trainer (a {type(checkpoint).__name__},"
                              " expected a dictionary)")
    for key, kind in expected.items():
        if not isinstance(checkpoint.get(key), kind):
            raise CheckpointError(f"{path}: not a checkpoint of this trainer ({key!r} missing or not a"
                                  f" {kind.__name__}); start the run again in a new --out")
    if not all(isinstance(v, torch.Tensor) for v in checkpoint["model"].values()):
        raise CheckpointError(f"{path}: not a checkpoint of this trainer (its model holds values that are not tensors)")
    return checkpoint
