#!/usr/bin/env python3
"""A stand-in training script for the tests, steered by its own hyperparameters.

Records what it received (argv, environment, pids) in $ADJUTANT_TEST_OUT/<job id>.json, then:
"lines": print that many lines; "print" and "times": print that text that many times; "sleep": seconds
to sleep; "ignore_term": ignore SIGTERM (and
start a grandchild that ignores it too); "exit": the exit code.
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
    time.sleep(0.05)
code = int(params.get("exit", 0))
if code:
    print(f"something went wrong: exiting with {code}", file=sys.stderr, flush=True)
sys.exit(code)
