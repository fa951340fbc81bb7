"""What the training commands of the learned parts share: command-line overrides,
the loss log with its progress bar, and model cards."""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
from collections.abc import Iterator
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


def truncate_loss_csv(csv_path: Path, last_step: int) -> None:
    """Drop rows logged after the checkpoint a run resumes from (they are redone)."""
    if not csv_path.exists():
        return
    with csv_path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= last_step]
    with csv_path.open("w", newline="") as fh:
        csv.writer(fh).writerows(kept)


class LossLog:
    """Rows of a loss CSV, flushed as written (a stopped run keeps its curve), and the run's progress bar."""

    def __init__(self, writer, fh, bar) -> None:
        self._writer, self._fh, self.bar = writer, fh, bar

    def row(self, values: list) -> None:
        self._writer.writerow(values)
        self._fh.flush()


@contextlib.contextmanager
def loss_log(csv_path: Path, columns: list[str] | tuple[str, ...], total: int, initial: int, progress: bool,
             desc: str, unit: str) -> Iterator[LossLog]:
    """The loss CSV opened for appending (header only when new, so a resumed run
    continues it) and a progress bar that starts at ``initial`` of ``total``."""
    from tqdm import tqdm

    new_file = not csv_path.exists()
    with csv_path.open("a", newline="") as fh, tqdm(total=total, initial=initial, disable=not progress,
                                                   desc=desc, unit=unit) as bar:
        writer = csv.writer(fh)
        if new_file:
            writer.writerow(columns)
        yield LossLog(writer, fh, bar)


def start_run(cfg) -> Path:
    """Fixed seeds, the thread count, and the run's output folder holding the
    configuration it ran with (``cfg`` has ``seed``, ``threads`` and ``out_dir``)."""
    import random

    import numpy as np
    import torch

    from gs4_slam import config as config_io

    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config_io.dump(cfg, out_dir / "train_config.yaml")
    return out_dir
