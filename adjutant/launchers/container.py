"""Jobs in containers on this machine: Podman (or Docker) ``run -d``, ``inspect``, ``stop``/``kill``.

Each job runs in one container named ``adjutant-<job id>``, labelled with the job, its attempt and this state
folder. The runtime is the source of truth: a restarted bot finds the container by its name (``inspect``) and
follows it again, and a submission whose container exists already adopts it instead of starting a second.

- **What runs**: ``[script, params_json]`` (no shell), in the image of the job's projects table
  (``image``) or ``ADJUTANT_CONTAINER_IMAGE``. The script's folder is mounted read-only at the same path (and is
  the working directory), the job's output folder (``<state folder>/outputs/<job id>``, ``ADJUTANT_OUTPUT_DIR``)
  read-write at the same path, and ``ADJUTANT_CONTAINER_MOUNTS`` as given.
- **Environment**: only :func:`~adjutant.launchers.job_environment`, passed as ``--env NAME`` (names only: the
  values reach the runtime through its own process environment, never its command line, so no ``ps`` shows them).
- **Limits**: ``--memory`` (with the same ``--memory-swap``: no swapping past it) and ``--cpus`` from the settings;
  a remediation's larger memory wins. A container that exits 137 with a memory limit (or that the runtime says was
  OOM-killed; cgroup v1 does not say) ended ``OUT_OF_MEMORY``: the scheduler runs it once more with 1.5 times the
  memory (:meth:`ContainerLauncher.remediation`), a second time it ends with "out of memory (limit …)".
- **GPUs**: the ids the scheduler handed the job become devices (Podman: CDI ``--device nvidia.com/gpu=N``;
  Docker: ``--gpus device=N,M``); inside, ``CUDA_VISIBLE_DEVICES`` counts them from 0, as the container sees them,
  and ``ADJUTANT_GPUS`` keeps the machine's ids.
- **Logs**: the runtime writes the container's output to a log file of its own (Podman: ``k8s-file`` at
  ``<job log>.container``; Docker: its ``json-file``), and each refresh appends what is new to the job's log
  as plain text, from an offset kept in ``<job log>.container-read``: nothing runs between passes, and a restarted
  bot goes on where the last one stopped.
- **Cancel**: ``stop -t <grace>`` (started, not waited for), and ``kill`` when the scheduler escalates.

Blocking (subprocesses with a timeout): the scheduler calls it from its worker thread, never the event loop.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import math
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from adjutant.jobs import Job, JobState, JobUpdate, iso, utcnow
from adjutant.launchers import Launcher, LaunchError, job_environment
from adjutant.settings import Settings

log = logging.getLogger(__name__)

#: Seconds one runtime command may take (``run -d`` of a present image takes well under one).
RUNTIME_TIMEOUT = 60.0
#: What the runtime itself needs of the bot's environment (its configuration, its socket, PATH for its helpers):
#: the runtime process gets these and the job's allow-listed variables, never the bot's whole environment.
RUNTIME_ENV_KEEP = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "XDG_RUNTIME_DIR",
    "XDG_CONFIG_HOME",
    "CONTAINERS_CONF",
    "CONTAINERS_STORAGE_CONF",
    "CONTAINERS_REGISTRIES_CONF",
    "CONTAINER_HOST",
    "CONTAINER_CONNECTION",
    "DOCKER_HOST",
    "DOCKER_CONFIG",
    "DOCKER_CONTEXT",
)
#: A job marked starting without a recorded container gets this long before it counts as lost.
STARTING_GRACE = dt.timedelta(seconds=60)
#: At most this much of a container's own log is read per refresh (the rest comes next time).
LOG_CHUNK = 4 * 1024 * 1024
#: The runtime's container states that mean it has not started yet, or that it runs.
NOT_STARTED = ("created", "configured", "initialized")
RUNNING = ("running", "paused", "stopping", "restarting")
MIB = 1024 * 1024
_MEMORY = re.compile(r"(\d+(?:\.\d+)?)([bkmg]?)b?", re.IGNORECASE)
_SCALE = {"b": 1, "": 1, "k": 1024, "m": MIB, "g": 1024 * MIB}


def parse_memory(text: str) -> int | None:
    """(pure) A memory size as the runtimes take it (``512m``, ``16g``, ``1.5G``, ``2048k``, bytes) in bytes."""
    match = _MEMORY.fullmatch(text.strip())
    if match is None:
        return None
    value = math.ceil(float(match[1]) * _SCALE[match[2].lower()])
    return value if value > 0 else None


def memory_text(size: int) -> str:
    """(pure) Bytes as people read a limit: ``32 MiB``, ``16 GiB``, ``1.5 GiB``."""
    if size >= 1024 * MIB:
        return f"{round(size / (1024 * MIB), 2):g} GiB"
    return f"{round(size / MIB, 2):g} MiB"


def container_name(job: Job) -> str:
    return f"adjutant-{job.id}"


def installed_runtime() -> str | None:
    """``podman`` if it is installed, else ``docker``, else None."""
    for runtime in ("podman", "docker"):
        if shutil.which(runtime):
            return runtime
    return None


def gpu_options(runtime: str, gpu_ids: Sequence[int]) -> list[str]:
    """(pure) The run options that hand a container the machine's GPUs ``gpu_ids``."""
    if not gpu_ids:
        return []
    if runtime == "docker":  # the NVIDIA Container Toolkit's --gpus; the quotes keep the comma in one value
        return ["--gpus", f'"device={",".join(str(gpu) for gpu in gpu_ids)}"']
    return [option for gpu in gpu_ids for option in ("--device", f"nvidia.com/gpu={gpu}")]  # CDI


def log_lines(data: bytes, *, json_lines: bool) -> tuple[bytes, int]:
    """(pure) The plain output in ``data``, a runtime's log file from some offset, and how many bytes of it were
    complete lines (a line still being written is read next time). Podman's ``k8s-file`` lines are
    ``<time> <stream> <F|P> <text>`` (P: the text goes on in the next line); Docker's ``json-file`` lines are JSON
    objects whose ``log`` holds the text with its newline."""
    end = data.rfind(b"\n") + 1
    out = bytearray()
    for line in data[:end].splitlines():
        if json_lines:
            try:
                out += str(json.loads(line).get("log", "")).encode("utf-8", "replace")
            except (ValueError, AttributeError):
                continue
            continue
        parts = line.split(b" ", 3)
        if len(parts) < 3:
            continue
        out += parts[3] if len(parts) == 4 else b""
        if parts[2] != b"P":
            out += b"\n"
    return bytes(out), end


def _runtime_time(text: Any) -> str | None:
    """The runtime's RFC 3339 time (nanoseconds, ``Z`` or an offset; year 1 when unset) as this project's ISO."""
    if not isinstance(text, str) or not text or text.startswith("0001-01-01"):
        return None
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?(?: .*)?", text.strip())
    if match is None:
        return None
    fraction = (match[2] or "0")[:6].ljust(6, "0")
    zone = match[3] or "Z"
    moment = dt.datetime.fromisoformat(f"{match[1]}.{fraction}{'+00:00' if zone == 'Z' else zone}")
    return iso(moment.astimezone(dt.UTC))


class ContainerLauncher(Launcher):
    """Run each job in a container of Podman or Docker on this machine."""

    name = "container"

    def __init__(self, settings: Settings, db_path: str) -> None:
        super().__init__(settings, db_path)
        self.runtime = settings.container_runtime or installed_runtime() or "podman"
        self.state_dir = Path(db_path).parent
        #: This state folder's label value: a second Adjutant on the machine never touches these containers.
        self.owner = hashlib.sha256(os.path.realpath(db_path).encode()).hexdigest()[:16]
        #: Containers whose end is kept beside their job's log: removed after the pass (name → its own log file).
        self._removals: dict[str, Path] = {}
        self._swept = False
        self._lock = threading.Lock()

    # --- the runtime ----------------------------------------------------------------------------
    def runtime_env(self, job_env: Mapping[str, str] | None = None) -> dict[str, str]:
        """The runtime process's environment: what it needs of the bot's (:data:`RUNTIME_ENV_KEEP`), plus
        ``job_env``, whose values ``--env NAME`` takes from here."""
        env = {key: os.environ[key] for key in RUNTIME_ENV_KEEP if key in os.environ}
        env.update(job_env or {})
        return env

    def work_dir(self) -> str:
        """Where the runtime runs: the state folder, never the bot's working directory (Podman's conmon leaves an
        ``oom`` file in its working directory when a container runs out of memory)."""
        if self.db_path and self.state_dir.is_dir():
            return str(self.state_dir)
        return tempfile.gettempdir()

    def run(
        self, args: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = RUNTIME_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """``<runtime> args...`` with a timeout; a missing or hung runtime is a :class:`LaunchError`."""
        try:
            return subprocess.run(
                [self.runtime, *args],
                env=dict(env) if env is not None else self.runtime_env(),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                stdin=subprocess.DEVNULL,
                cwd=self.work_dir(),
            )
        except FileNotFoundError:
            raise LaunchError(
                f"{self.runtime} is not installed on this machine (set ADJUTANT_CONTAINER_RUNTIME, or install it)"
            ) from None
        except subprocess.TimeoutExpired:
            raise LaunchError(f"{self.runtime} did not answer within {timeout:g}s") from None

    def inspect(self, names: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The runtime's records of the containers ``names`` that exist (one ``container inspect`` for all)."""
        if not names:
            return {}
        result = self.run(["container", "inspect", *names])
        try:
            records = json.loads(result.stdout or "[]")
        except ValueError:
            records = None
        if not isinstance(records, list) or (result.returncode != 0 and "no such" not in result.stderr.lower()):
            raise LaunchError(f"{self.runtime} inspect failed: {_first_line(result.stderr or result.stdout)}")
        found: dict[str, dict[str, Any]] = {}
        for record in records:
            if isinstance(record, dict):
                found[str(record.get("Name", "")).lstrip("/")] = record
        return found

    # --- what a job runs with -------------------------------------------------------------------
    def image_of(self, job: Job) -> str | None:
        """The image of the job's projects table (``image``), else ADJUTANT_CONTAINER_IMAGE."""
        for route in self.settings.routes:
            if job.route is not None and str(route.channel) == job.route and route.image:
                return route.image
        return self.settings.container_image

    def memory_of(self, job: Job) -> str | None:
        """The memory limit a job runs with: a remediation's, else ADJUTANT_CONTAINER_MEMORY."""
        return job.overrides.get("mem") or self.settings.container_memory

    def output_dir(self, job: Job) -> Path:
        return self.state_dir / "outputs" / job.id

    def container_log(self, job: Job) -> Path:
        return Path(f"{job.log_path}.container")

    def container_env(self, job: Job, env: Mapping[str, str]) -> dict[str, str]:
        """The job's variables inside: its allow-list, the output folder, and its GPUs as the container sees them."""
        inside = job_environment(env, job, self.settings.job_env)
        inside["ADJUTANT_OUTPUT_DIR"] = str(self.output_dir(job))
        if job.gpu_ids:
            inside["CUDA_VISIBLE_DEVICES"] = ",".join(str(index) for index in range(len(job.gpu_ids)))
            inside["ADJUTANT_GPUS"] = ",".join(str(gpu) for gpu in job.gpu_ids)
        return inside

    def run_argv(self, job: Job, names: Sequence[str], image: str) -> list[str]:
        """``run -d`` arguments (after the runtime's name) for ``job``, whose variables ``names`` are passed."""
        folder = str(Path(job.script).parent)
        output = str(self.output_dir(job))
        argv = [
            "run",
            "-d",
            "--name",
            container_name(job),
            "--label",
            f"adjutant.job={job.id}",
            "--label",
            f"adjutant.attempt={job.attempt}",
            "--label",
            f"adjutant.owner={self.owner}",
            "--label",
            f"adjutant.log={self.container_log(job)}",
            "--volume",
            f"{folder}:{folder}:ro",
            "--volume",
            f"{output}:{output}:rw",
            "--workdir",
            folder,
        ]
        if self.runtime == "podman":
            argv += ["--log-driver", "k8s-file", "--log-opt", f"path={self.container_log(job)}"]
        else:
            argv += ["--log-driver", "json-file"]
        for mount in shlex.split(self.settings.container_mounts or ""):
            argv += ["--volume", mount]
        memory = self.memory_of(job)
        if memory:
            argv += ["--memory", memory, "--memory-swap", memory]  # the same: no swapping past the limit
        cpus = job.overrides.get("cpus") or (
            None if self.settings.container_cpus is None else f"{self.settings.container_cpus:g}"
        )
        if cpus is not None:
            argv += ["--cpus", cpus]
        if self.settings.container_network:
            argv += ["--network", self.settings.container_network]
        argv += gpu_options(self.runtime, job.gpu_ids)
        for name in sorted(names):
            argv += ["--env", name]  # the value comes from the runtime's own environment
        argv += shlex.split(self.settings.container_args or "")
        return [*argv, image, job.script, job.params_text]

    # --- the launcher ---------------------------------------------------------------------------
    def submit(self, job: Job, env: dict[str, str]) -> JobUpdate:
        name = container_name(job)
        existing = self.inspect([name]).get(name)
        if existing is not None:
            labels = (existing.get("Config") or {}).get("Labels") or {}
            if labels.get("adjutant.job") != job.id or labels.get("adjutant.owner") != self.owner:
                raise LaunchError(f"a container named {name} exists and is not this job's; remove it first")
            if labels.get("adjutant.attempt") == str(job.attempt):  # started before a restart: follow it
                log.info("job %s: adopting its container %s", job.id, name)
                return JobUpdate(external_id=name, external_state=_status(existing))
            self.remove([name])  # an earlier attempt's (its end is recorded): make room for this one
        image = self.image_of(job)
        if not image:
            raise LaunchError("no container image: set ADJUTANT_CONTAINER_IMAGE (or image in the projects file)")
        memory = self.memory_of(job)
        if memory and parse_memory(memory) is None:
            raise LaunchError(f"the memory limit {memory!r} is not a size like 512m or 16g")
        try:
            Path(job.log_path).parent.mkdir(parents=True, exist_ok=True)
            self.output_dir(job).mkdir(parents=True, exist_ok=True)
            for stale in (self.container_log(job), _read_marker(self.container_log(job)), self.end_file(job)):
                stale.unlink(missing_ok=True)
        except OSError as error:
            raise LaunchError(f"cannot prepare the job's folders: {error}") from None
        inside = self.container_env(job, env)
        result = self.run(self.run_argv(job, list(inside), image), env=self.runtime_env(inside))
        if result.returncode != 0:
            self.remove([name])  # created but not started (a bad option, a missing device): leave nothing behind
            raise LaunchError(f"{self.runtime} refused the job: {_first_line(result.stderr or result.stdout)}")
        log.info("job %s started in container %s (%s)", job.id, name, image)
        return JobUpdate(external_id=name, external_state="created")

    def refresh_all(self, jobs: Sequence[Job]) -> dict[str, JobUpdate | None]:
        """All of a pass's container jobs with one ``inspect``; the containers that ended are removed after."""
        names = {job.id: job.external_id or container_name(job) for job in jobs}
        self._sweep_once(set(names.values()))
        found = self.inspect(list(names.values()))
        answers = {job.id: self._news(job, found.get(names[job.id])) for job in jobs}
        self._remove_ended()
        return answers

    def refresh(self, job: Job) -> JobUpdate | None:
        """One job on its own; a pass asks :meth:`refresh_all` instead."""
        name = job.external_id or container_name(job)
        answer = self._news(job, self.inspect([name]).get(name))
        self._remove_ended()
        return answer

    def _news(self, job: Job, record: dict[str, Any] | None) -> JobUpdate | None:
        """What the runtime's ``record`` of a job's container (None: none) changes in its row; copies its log.

        An ended container's end is kept in a side file (``<job log>.container-end``) before the container is
        removed, so an end the scheduler could not record (a crash just then) is still known next time."""
        name = container_name(job)
        if record is not None:
            labels = (record.get("Config") or {}).get("Labels") or {}
            if labels.get("adjutant.attempt") != str(job.attempt):
                record = None  # an earlier attempt's container, not removed yet: this attempt has none
        if record is None:
            kept = self._kept_end(job)
            if kept is not None:
                return self._end(job, kept, None)
            if job.external_id is None and utcnow() - job.created_at < STARTING_GRACE:
                return None
            if job.external_id is None:
                gone = "the bot stopped while starting its container; launch it again"
            else:
                gone = f"its container {name} is gone (removed outside Adjutant, or the machine restarted)"
            return JobUpdate(state=JobState.LOST, reason=gone, ended_at=iso())
        adopted = name if job.external_id is None else None  # started just before the bot stopped: recorded now
        status = _status(record)
        state_info = record.get("State") or {}
        changed_state = status if status != job.external_state else None
        self._copy_log(job, record)
        if status in NOT_STARTED or status in RUNNING:
            if status in RUNNING and job.state == JobState.STARTING:
                started = _runtime_time(state_info.get("StartedAt")) or iso()
                return JobUpdate(
                    state=JobState.RUNNING, started_at=started, external_id=adopted, external_state=changed_state
                )
            return JobUpdate(external_id=adopted, external_state=changed_state) if adopted or changed_state else None
        # exited, stopped, dead: it ended; its log to the last line (the end report shows the tail)
        for _ in range(64):
            if not self._copy_log(job, record):
                break
        code = state_info.get("ExitCode")
        end = {
            "attempt": job.attempt,
            "status": "exited" if status == "stopped" else status,  # Podman says stopped until its clean-up ran
            "code": code if isinstance(code, int) else None,
            "oom": bool(state_info.get("OOMKilled")),
            "memory": int((record.get("HostConfig") or {}).get("Memory") or 0),
            "started": _runtime_time(state_info.get("StartedAt")),
            "ended": _runtime_time(state_info.get("FinishedAt")) or iso(),
        }
        try:
            self.end_file(job).write_text(json.dumps(end), encoding="utf-8")
        except OSError as error:
            log.warning("cannot keep the end of job %s beside its log (%s); its container stays", job.id, error)
        else:
            with self._lock:
                self._removals[name] = self.container_log(job)
        return self._end(job, end, adopted)

    def _end(self, job: Job, end: Mapping[str, Any], adopted: str | None) -> JobUpdate:
        """(pure) The row's update for a container that ended as ``end`` says (see :meth:`_news`)."""
        code, memory = end.get("code"), int(end.get("memory") or 0)
        status = str(end.get("status") or "exited")
        changed_state = status if status != job.external_state else None
        reason: str | None = None
        if job.state == JobState.CANCELLING:
            state = JobState.CANCELLED
        elif code == 0:
            state = JobState.SUCCEEDED
        elif end.get("oom") or (code == 137 and memory > 0):  # cgroup v1 never says OOMKilled: 137 at a limit does
            state, reason = JobState.FAILED, f"out of memory (limit {memory_text(memory)})"
            changed_state = f"OUT_OF_MEMORY (limit {memory_text(memory)})"
        else:
            state = JobState.FAILED
        return JobUpdate(
            state=state,
            exit_code=code if isinstance(code, int) else None,
            reason=reason,
            started_at=end.get("started"),
            ended_at=end.get("ended") or iso(),
            external_id=adopted,
            external_state=changed_state,
        )

    def end_file(self, job: Job) -> Path:
        return Path(f"{job.log_path}.container-end")

    def _kept_end(self, job: Job) -> dict[str, Any] | None:
        """The end of this attempt's container kept beside the job's log, if it was."""
        try:
            end = json.loads(self.end_file(job).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return end if isinstance(end, dict) and end.get("attempt") == job.attempt else None

    def remediation(self, job: Job, kind: str) -> tuple[str, str] | None:
        """For a job killed for memory (``kind`` = ``mem``): (old, new) memory limit, new = 1.5 times old, in MiB.
        None for anything else (a container has no time limit of its own) or with no limit to grow."""
        memory = self.memory_of(job)
        size = parse_memory(memory) if memory else None
        if kind != "mem" or size is None or memory is None:
            return None
        return memory, f"{math.ceil(size * 1.5 / MIB)}m"

    def cancel(self, job: Job) -> None:
        """``stop -t <grace>``: the stop signal now, SIGKILL after the grace (started, not waited for)."""
        name = job.external_id or container_name(job)
        grace = max(1, math.ceil(self.settings.cancel_grace_seconds))
        try:
            process = subprocess.Popen(
                [self.runtime, "stop", "-t", str(grace), name],
                env=self.runtime_env(),
                cwd=self.work_dir(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as error:
            raise LaunchError(f"cannot run {self.runtime} stop: {error}") from None
        threading.Thread(target=process.wait, name=f"reap-stop-{job.id}", daemon=True).start()

    def escalate(self, job: Job) -> None:
        """The grace is over (or the job was lost): ``kill`` its container."""
        name = job.external_id or container_name(job)
        try:
            result = self.run(["kill", name])
        except LaunchError as error:
            log.warning("cannot kill container %s: %s", name, error)
            return
        if result.returncode != 0 and "not running" not in result.stderr and "no such" not in result.stderr.lower():
            log.warning("cannot kill container %s: %s", name, _first_line(result.stderr))

    # --- logs and leftovers ---------------------------------------------------------------------
    def _copy_log(self, job: Job, record: Mapping[str, Any]) -> bool:
        """Append what is new in the container's own log to the job's log, as plain text (at most
        :data:`LOG_CHUNK`); True when there may be more."""
        source = self.container_log(job) if self.runtime == "podman" else Path(str(record.get("LogPath") or ""))
        if not source.name:
            return False
        marker = _read_marker(self.container_log(job))
        try:
            offset = int(marker.read_text(encoding="ascii").strip() or 0) if marker.exists() else 0
            with source.open("rb") as log_file:
                log_file.seek(offset)
                data = log_file.read(LOG_CHUNK)
        except FileNotFoundError:
            return False
        except (OSError, ValueError) as error:
            log.warning("cannot read the container log of job %s: %s", job.id, error)
            return False
        text, used = log_lines(data, json_lines=self.runtime == "docker")
        if not used:
            return False
        try:
            with open(job.log_path, "ab") as out:
                out.write(text)
            marker.write_text(str(offset + used), encoding="ascii")
        except OSError as error:
            log.warning("cannot keep the log of job %s: %s", job.id, error)
            return False
        return len(data) == LOG_CHUNK

    def remove(self, names: Sequence[str]) -> None:
        """``rm -f`` containers (a failure is logged: the next pass tries again)."""
        if not names:
            return
        try:
            result = self.run(["rm", "-f", *names])
        except LaunchError as error:
            log.warning("cannot remove containers %s: %s", ", ".join(names), error)
            return
        if result.returncode != 0 and "no such" not in result.stderr.lower():
            log.warning("cannot remove containers %s: %s", ", ".join(names), _first_line(result.stderr))

    def _remove_ended(self) -> None:
        """Remove the containers whose end is kept (one ``rm -f``), and their own logs (copied by then)."""
        with self._lock:
            done, self._removals = self._removals, {}
        if not done:
            return
        self.remove(list(done))
        for path in done.values():
            for leftover in (path, _read_marker(path)):
                with contextlib.suppress(OSError):
                    leftover.unlink(missing_ok=True)

    def _sweep_once(self, active: set[str]) -> None:
        """Once per process: remove this state folder's ended containers of jobs no longer active (an earlier bot
        process ended before it removed them)."""
        if self._swept:
            return
        self._swept = True
        listed = self.run(
            ["ps", "-a", "--filter", f"label=adjutant.owner={self.owner}", "--filter", "status=exited",
             "--format", "{{.Names}}\t{{.Labels}}"]
        )  # fmt: skip
        for line in listed.stdout.splitlines() if listed.returncode == 0 else []:
            name = line.split("\t")[0].strip()
            found = re.search(r"adjutant\.log[:=]([^ ,\]\t]+)", line)
            if name.startswith("adjutant-") and name not in active and found is not None:
                with self._lock:
                    self._removals[name] = Path(found[1])
        self._remove_ended()


def _read_marker(container_log: Path) -> Path:
    """The side file that says how much of a container's own log is in the job's log."""
    return Path(f"{container_log}-read")


def _status(record: Mapping[str, Any]) -> str:
    return str((record.get("State") or {}).get("Status") or "unknown").lower()


def _first_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no message"
