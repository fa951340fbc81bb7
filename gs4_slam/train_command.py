"""`gs4-slam train <model>`: train a learned component and write its weights and card."""
from __future__ import annotations

import argparse
import json


def _train_predictor(args: argparse.Namespace) -> int:
    from gs4_slam.predictor.train import config_from_args, train

    card = train(config_from_args(args), resume=args.resume, progress=not args.no_progress)
    print(json.dumps(card["heldout_metrics"], indent=2))
    return 0


def _train_refiner(args: argparse.Namespace) -> int:
    from gs4_slam.refiner.train import config_from_args, train

    card = train(config_from_args(args), resume=args.resume, progress=not args.no_progress)
    print(json.dumps(card["heldout"], indent=2))
    return 0


def _common_options(parser: argparse.ArgumentParser, name: str, config_class: str) -> None:
    parser.add_argument("--config", help=f"YAML overlay of {config_class} (e.g. config/train_{name}.yaml)")
    parser.add_argument("--device", help="cpu or cuda")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out-dir", dest="out_dir", help=f"checkpoints and loss curves (default build/train/{name})")
    parser.add_argument("--cache-dir", dest="cache_dir", help="rendered synthetic sequences (default build/cache/synthetic)")
    parser.add_argument("--weights-out", dest="weights_out", help=f"where to write the weights (default weights/{name}.pt)")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out-dir")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a learned component (writes weights and a card)")
    models = parser.add_subparsers(dest="model", metavar="MODEL", required=True)
    predictor = models.add_parser("predictor", help="the Gaussian Prediction Model (weights/predictor.pt)")
    _common_options(predictor, "predictor", "TrainConfig")
    predictor.add_argument("--steps", type=int, help="optimisation steps")
    predictor.add_argument("--batch-size", type=int, dest="batch_size")
    predictor.set_defaults(func=_train_predictor)

    refiner = models.add_parser("refiner", help="the Gaussian Refinement Network (weights/refiner.pt)")
    _common_options(refiner, "refiner", "RefinerTrainConfig")
    refiner.add_argument("--stage-steps", type=int, nargs="+", dest="stage_steps",
                         help="optimiser steps of each curriculum stage (2, 4, 8 frames)")
    refiner.set_defaults(func=_train_refiner)
