#!/usr/bin/env python3
"""A stand-in training script for the tests, steered by its own hyperparameters.

Records what it received (argv, environment, pids) in $ADJUTANT_TEST_OUT/<job id>.json, then:
"lines": print that many lines; "print" and "times": print that text that many times; "sleep": seconds
to sleep; "ignore_term": ignore SIGTERM (and
start a grandchild that ignores it too); "exit": the exit code.
"usr1": what a preemption's SIGUSR1 does: "exit" (save a checkpoint, then exit 0 after "usr1_delay" seconds) or
"ignore" (go on; SIGTERM then ends it, unless "ignore_term"); with it, each start, SIGUSR1 and SIGTERM is appended to
$ADJUTANT_TEST_OUT/<job id>.events as "<what> <time.time()> <WANDB_RUN_ID>".
"""

import json
import os
import signal
import subprocess
import sys
import time

raw = sys.argv[1]
params = json.loads(raw)
job = os.environ.get("ADJUTANT_JOB_ID", "nojob")
out = os.environ["ADJUTANT_TEST_OUT"]
record = {
    "argv": sys.argv[1:],
    "argv_hex": os.fsencode(raw).hex(),
    "env": dict(os.environ),
    "pid": os.getpid(),
    "cwd": os.getcwd(),
}
preempt = params.get("usr1")
events_path = os.path.join(out, f"{job}.events")
asked_to_stop = []


def note_event(what: str) -> None:
    with open(events_path, "a") as events:
        events.write(f"{what} {time.time():.3f} {os.environ.get('WANDB_RUN_ID', '')}\n")


if preempt:
    note_event("start")

    def on_usr1(signum: int, frame: object) -> None:
        note_event("usr1")
        if preempt == "exit":
            asked_to_stop.append(time.time() + float(params.get("usr1_delay", 0)))

    signal.signal(signal.SIGUSR1, on_usr1)
    if not params.get("ignore_term"):

        def on_term(signum: int, frame: object) -> None:
            note_event("term")
            sys.exit(143)

        signal.signal(signal.SIGTERM, on_term)
if params.get("ignore_term"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen(
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"]
    )
    record["grandchild"] = child.pid
with open(os.path.join(out, f"{job}.json.tmp"), "w") as handle:
    json.dump(record, handle)
os.replace(os.path.join(out, f"{job}.json.tmp"), os.path.join(out, f"{job}.json"))
print(f"training with {raw}", flush=True)
for i in range(int(params.get("lines", 0))):
    print(f"step {i:08d} loss {1 / (i + 1):.6f} " + "x" * 80)
for _ in range(int(params.get("times", 1 if "print" in params else 0))):
    print(params["print"])
sys.stdout.flush()
deadline = time.time() + float(params.get("sleep", 0))
while time.time() < deadline:
    if asked_to_stop and time.time() >= asked_to_stop[0]:
        note_event("checkpointed")
        sys.exit(0)
    time.sleep(0.05)
code = int(params.get("exit", 0))
if code:
    print(f"something went wrong: exiting with {code}", file=sys.stderr, flush=True)
sys.exit(code)
