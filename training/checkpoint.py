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
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several unrelated types for a damaged file
        raise CheckpointError(f"{path}: unreadable checkpoint ({type(e).__name__}: {e})") from None
