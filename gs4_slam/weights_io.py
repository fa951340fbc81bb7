"""Reading and writing the learned parts' weight files (one format tag per model).

The Prediction Model and the Refinement Network store a dict with a ``format``
tag; reading checks the file exists, loads it without unpickling code, and checks
the tag, so a missing, corrupt or foreign file ends in the model's own error type
with the hint that says how to retrain.
"""
from __future__ import annotations

from pathlib import Path

import torch


def save_payload(path: str | Path, payload: dict) -> None:
    """Write ``payload`` to ``path`` atomically (a temporary file, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_payload(path: str | Path, fmt: str, what: str, hint: str, error: type[Exception],
                 device: str | torch.device = "cpu") -> dict:
    """The payload of a ``fmt`` weights file; ``error`` naming ``what`` and ``hint`` when it cannot be used."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} weights not found at {path}; {hint}")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise error(f"{what} weights at {path} are unreadable ({exc}); {hint}") from exc
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise error(f"{path} is not a {fmt} checkpoint; {hint}")
    return payload
