"""What the training commands of the learned parts share: command-line overrides and model cards."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def overrides_from_args(args: argparse.Namespace, keys: tuple[str, ...]) -> dict:
    """The options among ``keys`` that were given on the command line (None = not given)."""
    return {key: getattr(args, key) for key in keys if getattr(args, key, None) is not None}


def write_card(card: dict, weights_path: Path, out_dir: Path) -> None:
    """The card as JSON next to the weights (``<name>.json``) and in the run's folder."""
    card_path = Path(weights_path).with_suffix(".json")
    text = json.dumps(card, indent=2, default=str) + "\n"
    card_path.write_text(text)
    (Path(out_dir) / "card.json").write_text(text)
    log.info("weights written to %s, card to %s", weights_path, card_path)
