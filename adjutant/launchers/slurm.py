"""Jobs on a Slurm cluster: ``sbatch`` to submit, ``squeue``/``sacct`` to follow, ``scancel`` to stop.

Slurm is the source of truth: every recorded Slurm job is looked up again after a restart. A scheduler pass asks
about all its active Slurm jobs at once (submitit's habit): one ``squeue`` for all of them, and one ``sacct`` for
those the controller has already forgotten, at most once every :data:`BATCH_SECONDS` (the passes in between are
answered from that batch, unless they ask about a job it did not include). Every
command runs with a timeout (a dead controller makes them hang for many seconds), as an argv list,
never through a shell. ``sbatch`` runs with the job's environment as a local job would get it, and
``--export=<names>`` (always given, after ``ADJUTANT_SLURM_ARGS``) sends the job only the names of
:func:`~adjutant.launchers.job_environment`: Slurm then starts the job in the user's login environment on the node,
plus those variables and its own ``SLURM_*`` (never sbatch's default ``--export=ALL``, which would carry the whole
environment, secrets included).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import shlex
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from adjutant.jobs import ENDED, Job, JobState, JobUpdate, iso
from adjutant.launchers import Launcher, LaunchError, job_environment
from adjutant.settings import Settings

#: At most one batch of questions to Slurm (``squeue``, then ``sacct``) per launcher in this many seconds: with
#: passes every second, a job's end is noticed within about this long, and the controller hears from the bot once per
#: batch whatever the number of jobs.
BATCH_SECONDS = 2.0
#: ``squeue -O`` fields of the batch: ``|`` after each, no width (nothing is cut). ``exit_code`` is the raw wait
#: status (``768`` for exit 3, ``15`` for SIGTERM), unlike scontrol's ``code:signal``.
SQUEUE_FIELDS = "JobID:|,State:|,Reason:|,exit_code:|,StartTime:|,EndTime:|,tres-alloc:|"
#: ``sacct -c`` (the job completion log; no slurmdbd needed) fields, for jobs the controller no longer lists.
SACCT_FIELDS = "JobID,State,ExitCode,Start,End,AllocTRES"

#: Slurm job states → Adjutant job states (None: still active, no change of Adjutant state).
STATE_MAP: dict[str, JobState] = {
    "PENDING": JobState.STARTING,
    "CONFIGURING": JobState.STARTING,
    "REQUEUED": JobState.STARTING,
    "RESV_DEL_HOLD": JobState.STARTING,
    "REQUEUE_HOLD": JobState.STARTING,
    "REQUEUE_FED": JobState.STARTING,
    "RUNNING": JobState.RUNNING,
    "COMPLETING": JobState.RUNNING,
    "SUSPENDED": JobState.RUNNING,
    "STOPPED": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING,
    "STAGE_OUT": JobState.RUNNING,
    "RESIZING": JobState.RUNNING,
    "COMPLETED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "TIMEOUT": JobState.FAILED,
    "OUT_OF_MEMORY": JobState.FAILED,
    "NODE_FAIL": JobState.FAILED,
    "BOOT_FAIL": JobState.FAILED,
    "DEADLINE": JobState.FAILED,
    "PREEMPTED": JobState.FAILED,
    "REVOKED": JobState.FAILED,
    "SPECIAL_EXIT": JobState.FAILED,
    "CANCELLED": JobState.CANCELLED,
}


def allocated_gpus(tres: str) -> int | None:
    """GPUs in Slurm's AllocTRES (``cpu=2,mem=1G,node=1,gres/gpu=2``); None when it names none."""
    for item in tres.split(","):
        key, _, value = item.partition("=")
        if key == "gres/gpu" and value.isdigit():
            return int(value)
    return None


def parse_scontrol(line: str) -> dict[str, str]:
    """``scontrol show job -o`` prints one line of ``Key=Value`` pairs (values may not contain spaces,
    except the last ones like Command; good enough for the keys used here)."""
    fields: dict[str, str] = {}
    for token in line.split():
        key, sep, value = token.partition("=")
        if sep and key not in fields:
            fields[key] = value
    return fields


def parse_minutes(text: str) -> float | None:
    """A Slurm duration (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``) in minutes; None for
    UNLIMITED, INFINITE or nonsense."""
    text = text.strip()
    if not text or text.upper() in ("UNLIMITED", "INFINITE", "NONE"):
        return None
    days, _, rest = text.rpartition("-")
    try:
        parts = [int(p) for p in rest.split(":")]
        day_count = int(days) if days else 0
    except ValueError:
        return None
    if days:  # D-HH[:MM[:SS]]
        hours, minutes, seconds = [*parts, 0, 0][:3]
    elif len(parts) == 1:
        hours, minutes, seconds = 0, parts[0], 0
    elif len(parts) == 2:
        hours, minutes, seconds = 0, parts[0], parts[1]
    else:
        hours, minutes, seconds = parts[:3]
    return day_count * 1440 + hours * 60 + minutes + seconds / 60


def grow_time(current: float, maximum: float | None) -> tuple[str, str] | None:
    """The time limit times 1.5 in whole minutes, within ``maximum``: (old, new) for ``--time``, or None."""
    new = math.ceil(current * 1.5)
    if maximum is not None:
        new = min(new, math.floor(maximum))
    if new <= current:
        return None
    return f"{math.ceil(current)}", f"{new}"


def parse_memory_mb(text: str) -> int | None:
    """Slurm memory (``1536M``, ``2G``, ``1T``, plain megabytes) in megabytes."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", text.strip().upper())
    if match is None:
        return None
    scale = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 * 1024}[match[2]]
    value = float(match[1]) * scale
    return math.ceil(value) if value > 0 else None


def exit_code(raw: str | None, state: str) -> int | None:
    """Slurm's ``code:signal`` as one number: the code, or minus the signal when killed by one."""
    if not raw or ":" not in raw:
        return None
    code_text, _, signal_text = raw.partition(":")
    try:
        code, sig = int(code_text), int(signal_text)
    except ValueError:
        return None
    if sig and not code:
        return -sig
    if state == "CANCELLED" and not code:
        return -15
    return code


def wait_status(raw: str) -> str:
    """squeue's ``exit_code`` (a raw wait status) as scontrol's ``code:signal``; "" when it is not a number."""
    try:
        status = int(raw)
    except ValueError:
        return ""
    return f"{(status >> 8) & 0xFF}:{status & 0x7F}"


def parse_squeue(text: str) -> dict[str, dict[str, str]]:
    """Slurm id → record, from ``squeue -h -O`` :data:`SQUEUE_FIELDS`."""
    records: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < 7 or not parts[0].strip():
            continue
        records[parts[0].strip()] = {
            "state": (parts[1].split() or ["UNKNOWN"])[0].split("+")[0],
            "reason": parts[2].strip(),
            "exit": wait_status(parts[3].strip()),
            "start": parts[4].strip(),
            "end": parts[5].strip(),
            "tres": parts[6].strip(),
        }
    return records


def parse_sacct(text: str) -> dict[str, dict[str, str]]:
    """Slurm id → record, from ``sacct -c -n -P -o`` :data:`SACCT_FIELDS` (job steps, ``41.batch``, are left out)."""
    records: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) >= 5 and parts[0] and parts[1].split():
            records.setdefault(
                parts[0],
                {
                    "state": parts[1].split()[0],
                    "reason": "",
                    "exit": parts[2],
                    "start": parts[3],
                    "end": parts[4],
                    "tres": parts[5] if len(parts) > 5 else "",
                },
            )
    return records


def slurm_time(raw: str | None) -> str | None:
    """Slurm prints local times without a zone; record them as ISO with this machine's zone."""
    if not raw or raw in ("Unknown", "None", "N/A"):
        return None
    try:
        moment = dt.datetime.fromisoformat(raw)
    except ValueError:
        return None
    return iso(moment.astimezone(dt.UTC))


class SlurmLauncher(Launcher):
    """Submit with ``sbatch --parsable``; Slurm queues and runs; this launcher follows what it says."""

    name = "slurm"

    def __init__(self, settings: Settings, db_path: str) -> None:
        super().__init__(settings, db_path)
        #: The clock of the batches' rate limit (seconds, monotonic).
        self.clock: Callable[[], float] = time.monotonic
        self.batch_seconds = BATCH_SECONDS
        #: The last batch: Slurm id → record (None: Slurm no longer knows the job), when it was answered, and the
        #: error that made it fail (the passes until the next batch are given the same error).
        self._batch: dict[str, dict[str, str] | None] = {}
        self._batch_at: float | None = None
        #: When the last batch was answered, as a timestamp: a job Slurm no longer knows was lost then (every pass
        #: the batch serves gives the same time).
        self._batch_answered = iso()
        self._batch_error: str | None = None

    def _run(self, argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                argv,
                env=env,
                capture_output=True,
                text=True,
                timeout=self.settings.slurm_timeout,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except FileNotFoundError:
            raise LaunchError(f"{argv[0]} is not installed on this machine (is this a Slurm login node?)") from None
        except subprocess.TimeoutExpired:
            raise LaunchError(
                f"Slurm controller not reachable: {argv[0]} did not answer in {self.settings.slurm_timeout:g}s"
            ) from None

    def export_option(self, job: Job, env: Mapping[str, str]) -> str:
        """``--export=`` with the names of the job's allow-listed variables (their values reach sbatch through its
        own environment, so a comma in a value cannot split the list); ``NONE`` when there are none."""
        names = sorted(job_environment(env, job, self.settings.job_env))
        return f"--export={','.join(names) or 'NONE'}"

    def sbatch_argv(self, job: Job, env: Mapping[str, str] | None = None) -> list[str]:
        """sbatch's argv for ``job``, whose environment is ``env`` (only its allow-listed names are exported)."""
        log = Path(job.log_path)
        argv = [
            "sbatch",
            "--parsable",
            f"--job-name=adjutant-{job.id}",
            f"--output={log}",
            f"--error={log}",
            "--open-mode=append",
            f"--chdir={Path(job.script).parent}",
        ]
        if self.settings.slurm_partition:
            argv.append(f"--partition={self.settings.slurm_partition}")
        if self.settings.slurm_time and "time" not in job.overrides:
            argv.append(f"--time={self.settings.slurm_time}")
        if self.settings.slurm_gres:
            argv.append(f"--gres={self.settings.slurm_gres}")
        if job.gpus:  # the launch's own --gpus N wins over ADJUTANT_SLURM_GRES (sbatch takes the last)
            argv.append(f"--gres=gpu:{job.gpus}")
        if job.time_limit is not None and "time" not in job.overrides:
            argv.append(f"--time={max(1, math.ceil(job.time_limit / 60))}")
        argv += shlex.split(self.settings.slurm_args or "")
        # The job's priority class as Slurm knows one (ADJUTANT_SLURM_PRIORITY_ARGS: --qos, --nice): Slurm orders
        # and preempts its own jobs; Adjutant never preempts them.
        argv += shlex.split(self.settings.slurm_priority_args.get(job.priority, ""))
        argv.append(self.export_option(job, env or {}))  # after ADJUTANT_SLURM_ARGS: sbatch takes the last --export
        # A remediation's options come last: sbatch takes the last of a repeated option.
        argv += [f"--{key}={value}" for key, value in sorted(job.overrides.items()) if key in ("time", "mem")]
        if "cpus" in job.overrides:  # --cpus N at launch: Slurm counts whole CPUs per task
            argv.append(f"--cpus-per-task={math.ceil(float(job.overrides['cpus']))}")
        return [*argv, job.script, job.params_text]  # the exact JSON text recorded at launch

    def remediation(self, job: Job, kind: str) -> tuple[str, str] | None:
        """For a job that ended TIMEOUT (``kind`` = ``time``) or OUT_OF_MEMORY (``mem``): (old, new) value of the
        sbatch option, times 1.5 (time within the partition's MaxTime), or None when it cannot grow."""
        if not job.external_id:
            return None
        result = self._run(["scontrol", "show", "job", "-o", job.external_id])
        fields = (
            parse_scontrol(result.stdout.strip().splitlines()[0]) if result.returncode == 0 and result.stdout else {}
        )
        if kind == "time":
            current = parse_minutes(fields.get("TimeLimit", ""))
            if current is None:
                return None
            maximum = None
            partition = fields.get("Partition")
            if partition:
                shown = self._run(["scontrol", "show", "partition", "-o", partition])
                maximum = (
                    parse_minutes(parse_scontrol(shown.stdout.strip()).get("MaxTime", "")) if shown.stdout else None
                )
            return grow_time(current, maximum)
        memory = parse_memory_mb(fields.get("MinMemoryNode") or fields.get("MinMemoryCPU") or "")
        if memory is None:
            return None
        return f"{memory}M", f"{math.ceil(memory * 1.5)}M"

    def submit(self, job: Job, env: dict[str, str]) -> JobUpdate:
        Path(job.log_path).parent.mkdir(parents=True, exist_ok=True)  # a missing output folder fails the job
        result = self._run(self.sbatch_argv(job, env), env=env)
        if result.returncode != 0:
            message = (result.stderr or result.stdout).strip().splitlines()
            raise LaunchError(f"sbatch refused the job: {message[-1] if message else f'exit {result.returncode}'}")
        slurm_id = result.stdout.strip().split(";")[0]
        if not slurm_id.isdigit():
            raise LaunchError(f"sbatch answered {result.stdout.strip()!r}, not a job id")
        return JobUpdate(external_id=slurm_id, external_state="PENDING")

    def status(self, slurm_id: str) -> dict[str, str] | None:
        """Slurm's record of the job: scontrol while it knows the job, else sacct's job completion log."""
        result = self._run(["scontrol", "show", "job", "-o", slurm_id])
        if result.returncode == 0 and result.stdout.strip():
            fields = parse_scontrol(result.stdout.strip().splitlines()[0])
            return {
                "state": fields.get("JobState", "UNKNOWN").split("+")[0],
                "reason": fields.get("Reason", ""),
                "exit": fields.get("ExitCode", ""),
                "start": fields.get("StartTime", ""),
                "end": fields.get("EndTime", ""),
                "tres": fields.get("AllocTRES", ""),
            }
        if "Invalid job id" not in (result.stderr + result.stdout):
            raise LaunchError(f"Slurm controller not reachable: {(result.stderr or result.stdout).strip()[:200]}")
        return self.completed([slurm_id]).get(slurm_id)

    def completed(self, slurm_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """sacct's records of finished jobs (its job completion log, ``-c``): one call for all of ``slurm_ids``."""
        result = self._run(["sacct", "-c", "-j", ",".join(slurm_ids), "-n", "-P", "-o", SACCT_FIELDS])
        wanted = set(slurm_ids)
        return {key: record for key, record in parse_sacct(result.stdout).items() if key in wanted}

    def statuses(self, slurm_ids: Sequence[str]) -> dict[str, dict[str, str] | None]:
        """Slurm's records of many jobs in one batch: one ``squeue`` for all of them, then one ``sacct`` for those
        the controller no longer lists (None: neither knows the job). Raises :class:`LaunchError` when the
        controller does not answer."""
        result = self._run(["squeue", "-h", "-t", "all", "-j", ",".join(slurm_ids), "-O", SQUEUE_FIELDS])
        if result.returncode != 0 and "Invalid job id" not in (result.stderr + result.stdout):
            raise LaunchError(f"Slurm controller not reachable: {(result.stderr or result.stdout).strip()[:200]}")
        listed = parse_squeue(result.stdout) if result.returncode == 0 else {}
        found: dict[str, dict[str, str] | None] = {key: listed.get(key) for key in slurm_ids}
        forgotten = [key for key, record in found.items() if record is None]
        if forgotten:
            found.update(self.completed(forgotten))
        return found

    def _records(self, slurm_ids: Sequence[str]) -> dict[str, dict[str, str] | None]:
        """The batch that answers this pass: the last one while it is younger than :attr:`batch_seconds` and holds
        every job asked about (or failed: its error again), else a new one."""
        fresh = self._batch_at is not None and self.clock() - self._batch_at < self.batch_seconds
        if fresh and self._batch_error is not None:
            raise LaunchError(self._batch_error)  # a new one each time: a re-raised one would grow its traceback
        if fresh and all(key in self._batch for key in slurm_ids):
            return self._batch
        try:
            self._batch = self.statuses(slurm_ids)
            self._batch_answered = iso()
            self._batch_error = None
        except LaunchError as error:
            self._batch, self._batch_error = {}, str(error)
            raise
        finally:
            self._batch_at = self.clock()  # from the answer on: a controller that timed out is not asked at once again
        return self._batch

    def refresh_all(self, jobs: Sequence[Job]) -> dict[str, JobUpdate | None]:
        """One batch for all of a pass's Slurm jobs (see :meth:`statuses`), at most one per :attr:`batch_seconds`."""
        slurm_ids = list(dict.fromkeys(job.external_id for job in jobs if job.external_id))
        records = self._records(slurm_ids) if slurm_ids else {}
        answered = self._batch_answered
        return {
            job.id: self._news(job, records[job.external_id], answered) if job.external_id else None for job in jobs
        }

    def refresh(self, job: Job) -> JobUpdate | None:
        """One job on its own (``scontrol show job``, then ``sacct``); a pass asks :meth:`refresh_all` instead."""
        if not job.external_id:
            return None  # not submitted yet (the submit is recorded in the same step that starts it)
        record = self.status(job.external_id)
        return self._news(job, record, iso())

    def _news(self, job: Job, record: dict[str, str] | None, answered_at: str) -> JobUpdate | None:
        """(pure) What Slurm's ``record`` of a submitted job, answered at ``answered_at``, changes in its row
        (None: nothing)."""
        assert job.external_id is not None
        if record is None:
            forgotten = f"Slurm no longer knows job {job.external_id}"
            return JobUpdate(state=JobState.LOST, reason=forgotten, ended_at=answered_at)
        slurm_state = record["state"]
        described = slurm_state + (f" ({record['reason']})" if record["reason"] not in ("", "None") else "")
        state = STATE_MAP.get(slurm_state)
        external_state = described if described != job.external_state else None
        if state in ENDED:
            if job.state == JobState.CANCELLING and state != JobState.SUCCEEDED:
                state = JobState.CANCELLED
            reason = f"Slurm says {described}" if state == JobState.FAILED and slurm_state != "FAILED" else None
            return JobUpdate(
                state=state,
                exit_code=exit_code(record["exit"], slurm_state),
                ended_at=slurm_time(record["end"]) or answered_at,  # usage counts Slurm's own elapsed time
                started_at=slurm_time(record["start"]),
                reason=reason,
                external_state=external_state,
                gpus_allocated=allocated_gpus(record.get("tres", "")),
            )
        if state == JobState.RUNNING and job.state == JobState.STARTING:
            return JobUpdate(
                state=state,
                started_at=slurm_time(record["start"]) or answered_at,
                external_state=external_state,
                gpus_allocated=allocated_gpus(record.get("tres", "")),
            )
        return JobUpdate(external_state=external_state) if external_state else None

    def cancel(self, job: Job) -> None:
        if not job.external_id:
            return
        result = self._run(["scancel", job.external_id])
        if result.returncode != 0:
            raise LaunchError(f"scancel failed: {(result.stderr or result.stdout).strip()[:200]}")
