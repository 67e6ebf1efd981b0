"""An ``$agents`` job: one W&B sweep agent that takes one trial from W&B's controller, runs it, and exits.

Run by the bot's interpreter, by path (no package imports: standard library only, and wandb in the child)::

    python adjutant/sweeps/agent_job.py '{"sweep": "entity/project/sweep_id"}'

It runs ``<this interpreter> -m wandb agent --count 1 --forward-signals entity/project/sweep_id`` in a process group
of its own, with this interpreter's ``bin`` directory first on PATH (W&B's ``${interpreter}`` is the ``python``
found on PATH) and without WANDB_SILENT (the agent says which run it starts). W&B's agent asks its controller for
one trial, runs the sweep's own ``program`` with that trial's parameters (``${args_json}``: one JSON argument),
and exits 0 after it; it also exits 0 at once when the controller answers ``exit`` (grid exhausted, run_cap
reached, sweep paused, finished or cancelled), having run nothing.

SIGTERM, SIGINT, SIGHUP and SIGUSR1 sent to this job are forwarded to the agent's process group; the agent
(``--forward-signals``) forwards them to the trial it runs, so an Adjutant cancel (SIGTERM) stops the trial and the
agent waits for it to end, and a preemption signal reaches the trainer. Should this process die without forwarding
(SIGKILL after the grace), the agent gets SIGTERM from the kernel (Linux: PR_SET_PDEATHSIG) and stops its trial.

With ``"dir": "/abs/folder"`` in its argument, W&B's agent runs in that folder (the route's experiment script's:
a relative ``program`` then names the script the service checked before queuing this job).

Exit status: W&B's agent's (128 + N when it died of signal N); 2 when the argument is wrong. Note that W&B's agent
exits 0 even when its trial failed: the trial's outcome is its W&B run's state.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType

USAGE = 'usage: agent_job.py \'{"sweep": "entity/project/sweep_id", "dir": "/its/folder"}\''  # dir: optional
#: ``entity/project/sweep_id``: the full path, so the trial's wandb.init writes to the sweep's project (a bare id
#: would leave the trainer on the default entity and project).
SWEEP_PATH = re.compile(r"[^/\s][^/]*/[^/\s][^/]*/[A-Za-z0-9]+")
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)
#: What the job's environment may carry that must not reach W&B's agent: WANDB_SILENT hides what the agent says;
#: the job's own run id, sweep id and param file are the agent's to set for the trial it starts; a service socket
#: is another process's.
DROPPED = ("WANDB_SILENT", "WANDB_RUN_ID", "WANDB_SWEEP_ID", "WANDB_SWEEP_PARAM_PATH", "WANDB_SERVICE")
PR_SET_PDEATHSIG = 1


class BadArgument(ValueError):
    """The job's argument is not what an ``$agents`` job takes; ``str()`` says why."""


def parse_argument(argv: Sequence[str]) -> str:
    """The sweep path ``entity/project/sweep_id`` from the job's one JSON argument."""
    return parse_spec(argv)[0]


def parse_spec(argv: Sequence[str]) -> tuple[str, str | None]:
    """The sweep path ``entity/project/sweep_id`` and the folder W&B's agent runs in (``dir``: the experiment
    script's, so a relative ``program`` is the one the service checked; None: this job's own) from the job's one JSON
    argument."""
    if len(argv) != 1:
        raise BadArgument(f"expected one JSON argument, got {len(argv)}")
    try:
        spec = json.loads(argv[0])
    except json.JSONDecodeError as error:
        raise BadArgument(f"the argument is not JSON ({error.msg}, character {error.pos})") from None
    if not isinstance(spec, dict):
        raise BadArgument('the argument must be a JSON object: {"sweep": "entity/project/sweep_id"}')
    unknown = sorted(set(spec) - {"sweep", "dir"})
    if unknown:
        raise BadArgument(f"unexpected key(s) {', '.join(map(repr, unknown))}: the keys are 'sweep' and 'dir'")
    sweep = spec.get("sweep")
    if not isinstance(sweep, str) or not SWEEP_PATH.fullmatch(sweep):
        raise BadArgument(f"'sweep' must be the sweep's full path entity/project/sweep_id, not {sweep!r}")
    folder = spec.get("dir")
    if folder is not None and not (isinstance(folder, str) and os.path.isabs(folder) and os.path.isdir(folder)):
        raise BadArgument(f"'dir' must be an absolute path to a folder, not {folder!r}")
    return sweep, folder


def agent_command(sweep: str, python: str = sys.executable) -> list[str]:
    """W&B's agent, on this interpreter, for one trial of ``sweep``."""
    return [python, "-m", "wandb", "agent", "--count", "1", "--forward-signals", sweep]


def agent_environment(environ: Mapping[str, str], python: str = sys.executable) -> dict[str, str]:
    """The job's environment for the agent: the interpreter's bin directory first on PATH (not resolved: a venv's
    ``bin/python`` is a link out of the venv), without :data:`DROPPED`."""
    bin_dir = str(Path(python).parent)
    rest = [p for p in environ.get("PATH", "").split(os.pathsep) if p and p != bin_dir]
    env = {k: v for k, v in environ.items() if k not in DROPPED}
    env["PATH"] = os.pathsep.join([bin_dir, *rest])
    return env


def _child_setup(parent: int) -> Callable[[], None]:
    """What the agent's process does before exec: a process group of its own, and SIGTERM when this job dies
    (PR_SET_PDEATHSIG, Linux; libc is loaded here, before the fork)."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: only the forwarding stops the agent
        prctl = None

    def setup() -> None:
        os.setpgid(0, 0)
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
            if os.getppid() != parent:  # the job died before prctl took effect
                os.kill(os.getpid(), signal.SIGTERM)

    return setup


def run(sweep: str, folder: str | None = None) -> int:
    """Run W&B's agent for one trial of ``sweep`` (in ``folder``, if given), forwarding signals to it; its exit
    status."""
    agent: subprocess.Popen[bytes] | None = None
    early: list[int] = []  # signals that came before the agent had a process group

    def forward(signum: int, frame: FrameType | None) -> None:
        if agent is None:
            early.append(signum)
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):  # it ended: its status is on its way
            os.killpg(agent.pid, signum)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    setup = _child_setup(os.getpid())
    agent = subprocess.Popen(
        agent_command(sweep), env=agent_environment(os.environ), preexec_fn=setup, cwd=folder or None
    )
    for signum in early:
        forward(signum, None)
    code = agent.wait()
    return code if code >= 0 else 128 - code


def main(argv: Sequence[str] | None = None) -> int:
    try:
        sweep, folder = parse_spec(sys.argv[1:] if argv is None else argv)
    except BadArgument as error:
        print(f"agent_job: {error}\n{USAGE}", file=sys.stderr)
        return 2
    return run(sweep, folder)


if __name__ == "__main__":
    sys.exit(main())
