#!/usr/bin/env python3
"""Train a small MNIST classifier; the hyperparameters come as ONE JSON argument.

    python train_model.py '{"epochs": 5, "batch_size": 128, "learning_rate": 0.001, "hidden_size": 128}'

Datasets: "mnist" (70,000 28x28 digits, downloaded from OpenML on first use) or "digits" (1,797
8x8 digits shipped inside scikit-learn: no internet needed). There is no silent fallback from one to
the other. Every epoch logs train/validation loss and accuracy to Weights & Biases at once (so that
Adjutant's live status of the job shows the step and val_loss while it trains); `wandb.init` reads
WANDB_PROJECT, WANDB_ENTITY and WANDB_RUN_ID from the environment, so the run Adjutant launched is the
run Adjutant links to.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

DEFAULTS: dict[str, Any] = {
    "dataset": "mnist",
    "epochs": 5,
    "batch_size": 128,
    "learning_rate": 0.001,
    "hidden_size": 128,
    "val_fraction": 0.1,
    "seed": 0,
    # Each epoch lasts at least this long (the digits data set trains in milliseconds; paced like this, a
    # 3-epoch job runs long enough to be watched from Discord: its live status and its W&B run events).
    "min_epoch_seconds": 8,
}
TYPES: dict[str, tuple[type, ...]] = {
    "dataset": (str,),
    "epochs": (int,),
    "batch_size": (int,),
    "learning_rate": (int, float),
    "hidden_size": (int,),
    "val_fraction": (int, float),
    "seed": (int,),
    "min_epoch_seconds": (int, float),
}


class BadHyperparameters(ValueError):
    pass


def parse(argv: list[str]) -> dict[str, Any]:
    """Defaults, overridden by the JSON object in argv[0]; unknown keys and wrong types are refused."""
    if len(argv) > 1:
        raise BadHyperparameters("give the hyperparameters as ONE JSON argument (quote it)")
    given = json.loads(argv[0]) if argv else {}
    if not isinstance(given, dict):
        raise BadHyperparameters("the hyperparameters must be a JSON object")
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise BadHyperparameters(f"unknown hyperparameter(s) {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")
    params = {**DEFAULTS, **given}
    for key, kinds in TYPES.items():
        value = params[key]
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise BadHyperparameters(f"{key} must be {' or '.join(k.__name__ for k in kinds)}, not {value!r}")
    if params["dataset"] not in ("mnist", "digits"):
        raise BadHyperparameters("dataset must be 'mnist' or 'digits'")
    for key in ("epochs", "batch_size", "hidden_size"):
        if params[key] < 1:
            raise BadHyperparameters(f"{key} must be at least 1")
    if not 0 <= params["min_epoch_seconds"] <= 3600:
        raise BadHyperparameters("min_epoch_seconds must be between 0 and 3600")
    if not 0 < params["learning_rate"] < 10 or not 0 < params["val_fraction"] < 1:
        raise BadHyperparameters("learning_rate must be in (0, 10) and val_fraction in (0, 1)")
    return params


def load(dataset: str) -> tuple[Any, Any]:
    """Features scaled to [0, 1] and integer labels."""
    if dataset == "digits":
        from sklearn.datasets import load_digits

        data = load_digits()
        return data.data / 16.0, data.target
    from sklearn.datasets import fetch_openml

    try:
        x, y = fetch_openml("mnist_784", version=1, return_X_y=True, as_frame=False)
    except Exception as error:  # no network, OpenML down, ...: say so; never switch data sets behind your back
        raise SystemExit(f'could not download MNIST ({error}); use "dataset": "digits" to train offline') from error
    return x / 255.0, y.astype(int)


def train(params: dict[str, Any]) -> float:
    import numpy as np
    import wandb
    from sklearn.metrics import log_loss
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    x, y = load(params["dataset"])
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=params["val_fraction"], random_state=params["seed"], stratify=y
    )
    classes = np.unique(y)
    model = MLPClassifier(
        hidden_layer_sizes=(params["hidden_size"],),
        learning_rate_init=params["learning_rate"],
        batch_size=min(params["batch_size"], len(x_train)),
        random_state=params["seed"],
    )
    # wandb sends what was logged to W&B every 15 s by default: longer than an 8-second epoch, and most of a
    # 3-epoch job. Every 2 s (unless the environment says otherwise), W&B's summary of the run, which Adjutant's
    # live status reads, has each epoch within seconds.
    os.environ.setdefault("WANDB__FILE_STREAM_TRANSMIT_INTERVAL", "2")
    run = wandb.init(project=None, config=params, job_type="train")  # WANDB_PROJECT/ENTITY/RUN_ID from the env
    best = float("inf")
    for epoch in range(1, params["epochs"] + 1):
        started = time.monotonic()
        model.partial_fit(x_train, y_train, classes=classes)  # one pass over the training set
        metrics = {
            "epoch": epoch,
            "train_loss": log_loss(y_train, model.predict_proba(x_train), labels=classes),
            "train_accuracy": model.score(x_train, y_train),
            "val_loss": log_loss(y_val, model.predict_proba(x_val), labels=classes),
            "val_accuracy": model.score(x_val, y_val),
        }
        best = min(best, metrics["val_loss"])
        # commit: the epoch's row is complete now (with step= alone, wandb would hold it until the next step's)
        wandb.log(metrics, step=epoch, commit=True)
        print(json.dumps(metrics), flush=True)
        time.sleep(max(0.0, params["min_epoch_seconds"] - (time.monotonic() - started)))
    run.summary["best_val_loss"] = best
    run.finish()
    return best


def main(argv: list[str]) -> int:
    try:
        params = parse(argv)
    except (BadHyperparameters, json.JSONDecodeError) as error:
        print(f"train_model.py: {error}", file=sys.stderr)
        return 2
    print(f"training with {json.dumps(params)}", flush=True)
    best = train(params)
    print(f"best validation loss: {best:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
