#!/usr/bin/env python3
"""A training process on the real wandb client (pointed at the W&B stand-in by its environment).

Its one argument is JSON: log ``steps`` steps of a falling loss, then (``nan``) a NaN loss, then keep the
process and its heartbeat alive for ``hang`` seconds without logging a step (a hung data loader), then log
``after`` more steps, wait up to ``linger`` seconds and finish. It touches ``$TRAINER_MARK`` once the hang
begins; with ``wait_go`` the hang ends early when ``$TRAINER_MARK.go`` exists, and the lingering ends when
``$TRAINER_MARK.done`` exists.
"""

import json
import os
import sys
import time

import wandb

params = json.loads(sys.argv[1])
run = wandb.init(
    project=os.environ.get("WANDB_PROJECT", "proj"),
    entity=os.environ.get("WANDB_ENTITY", "team"),
    config=params,
    settings=wandb.Settings(heartbeat_seconds=1, x_file_stream_transmit_interval=0.5),
)
for step in range(int(params.get("steps", 3))):
    run.log({"loss": 1.0 / (step + 1)})
if params.get("nan"):
    run.log({"loss": float("nan")})
mark = os.environ.get("TRAINER_MARK")
if mark:
    open(mark, "w").close()
deadline = time.time() + float(params.get("hang", 0))
while time.time() < deadline and not (params.get("wait_go") and mark and os.path.exists(mark + ".go")):
    time.sleep(0.1)
for step in range(int(params.get("after", 0))):
    run.log({"loss": 0.1 / (step + 1)})
deadline = time.time() + float(params.get("linger", 0))
while time.time() < deadline and not (mark and os.path.exists(mark + ".done")):
    time.sleep(0.1)
run.finish()
