"""Run Adjutant for the MNIST example: the original Adjutant's example client, unchanged in spirit.

export DISCORD_TOKEN=...   # or put it in .env
python mnist_adjutant.py
"""

import os
from pathlib import Path

from adjutant import Adjutant

WANDB_ENTITY = os.environ.get("WANDB_ENTITY", "my-wandb-entity")
WANDB_PROJECT = os.environ.get("WANDB_PROJECT", "mnist")
RUN_EXPERIMENT_SCRIPT = str(Path(__file__).resolve().parent / "run_experiment.sh")


def main() -> None:
    client = Adjutant(WANDB_ENTITY, WANDB_PROJECT, run_experiment_script=RUN_EXPERIMENT_SCRIPT)
    client.run(os.environ["DISCORD_TOKEN"])


if __name__ == "__main__":
    main()
