#!/usr/bin/env bash
# Reproduces weights/predictor.pt (and its card): the first stage on 64 rooms, then
# the second stage resumed from its checkpoint with 256 more rooms, class balancing
# and a semantics-only pass, then the third stage, which fine-tunes the second's
# weights for semantics alone on 6000 more short rooms (see the three configs).
# About 1 h 40 min on 2 CPU cores; pass --device cuda to train on a GPU. Needs
# `make setup` first.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
.venv/bin/gs4-slam train predictor --config config/train_predictor.yaml "$@"
.venv/bin/gs4-slam train predictor --config config/train_predictor_stage2.yaml --resume "$@"
.venv/bin/gs4-slam train predictor --config config/train_predictor_stage3.yaml "$@"
