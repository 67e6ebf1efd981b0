#!/usr/bin/env python3
"""A sweep trial for the tests, on the real wandb client (pointed at the W&B stand-in by its environment).

Its one argument is the trial's parameters as JSON. It logs ``loss`` = (x - 0.3)² + ``offset`` + 1/(step + 1) for
``steps`` steps (default 1: a single value, (x - 0.3)² + ``offset``), ``step_seconds`` apart, then finishes; the
summary's ``loss`` is the last value. ``exit``: the exit code after finishing. It records what it received (argv,
WANDB_SWEEP_ID, WANDB_RUN_ID) and when it started and ended in ``$ADJUTANT_TEST_OUT/<job id>.json``.
"""

import json
import os
import sys
import time

import wandb

started = time.time()
params = json.loads(sys.argv[1])
out = os.environ.get("ADJUTANT_TEST_OUT")
job = os.environ.get("ADJUTANT_JOB_ID", "nojob")
record: dict[str, object] = {
    "argv": sys.argv[1:],
    "sweep": os.environ.get("WANDB_SWEEP_ID"),
    "run": os.environ.get("WANDB_RUN_ID"),
    "job": job,
    "start": started,
}


def save(**more: object) -> None:
    if out:
        record.update(more)
        path = os.path.join(out, f"{job}.json")
        with open(path + ".tmp", "w") as file:
            json.dump(record, file)
        os.replace(path + ".tmp", path)


save()
run = wandb.init(
    project=os.environ.get("WANDB_PROJECT", "proj"),
    entity=os.environ.get("WANDB_ENTITY", "team"),
    config=params,
    settings=wandb.Settings(heartbeat_seconds=1, x_file_stream_transmit_interval=0.5),
)
x = float(params.get("x", 0.0))
base = (x - 0.3) ** 2 + float(params.get("offset", 0.0))
steps = int(params.get("steps", 1))
for step in range(steps):
    run.log({"loss": base + (1.0 / (step + 1) if steps > 1 else 0.0)})
    if step < steps - 1:
        time.sleep(float(params.get("step_seconds", 0.0)))
run.finish()
save(end=time.time())
sys.exit(int(params.get("exit", 0)))
