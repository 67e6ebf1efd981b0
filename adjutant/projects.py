"""Which W&B project each channel serves: the ``[[projects]]`` tables of ADJUTANT_CONFIG, or the one-project
shortcut of the environment (WANDB_PROJECT, ADJUTANT_CHANNEL, ADJUTANT_EXPERIMENT_SCRIPT, ...). Pure.

```toml
[[projects]]
project = "mnist"                  # W&B project (required)
entity = "my-team"                 # default: WANDB_ENTITY
channel = "general"                # name or id: its runs are announced and its commands taken there (required)
experiment_script = "examples/mnist/run_experiment.sh"   # optional: `$experiment` in this channel runs it
launch_roles = ["ml-team"]         # optional; launch_users likewise; default: the global rule
metric = "val_loss"                # optional; metric_goal likewise
launcher = "container"             # optional: where its jobs run (default ADJUTANT_LAUNCHER)
alert_policy = "gpu-idle=stop after 30, nan=stop"   # optional: its kinds replace ADJUTANT_ALERT_POLICY's here
image = "localhost/mnist:3"        # optional, with the container launcher: the image its jobs run in
```
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

#: The keys a ``[[projects]]`` table may hold, with what each must be.
KEYS = {
    "project": "a W&B project name",
    "entity": "a W&B entity name",
    "channel": "a channel name or numeric id",
    "experiment_script": "the path of an executable script",
    "launch_roles": "a list of role names or ids",
    "launch_users": "a list of user ids",
    "metric": "a summary metric name",
    "metric_goal": '"min" or "max"',
    "image": "a container image name, e.g. localhost/mnist:3",
    "launcher": 'where its jobs run: "local", "slurm", "ray" or "container" (default: ADJUTANT_LAUNCHER)',
    "alert_policy": 'per alert kind, notify, stop or stop after <minutes>, e.g. "gpu-idle=stop after 30, nan=stop"'
    " (its kinds replace ADJUTANT_ALERT_POLICY's for this project)",
}
#: The backends a projects table may pick (ADJUTANT_LAUNCHER's values).
LAUNCHERS = ("local", "slurm", "ray", "container")
_NAME = re.compile(r"^[^/\s]{1,128}$")


class ProjectsFileError(ValueError):
    """A problem with the projects file; the message names the file, the line and the fix."""


@dataclass(frozen=True)
class ProjectRoute:
    """One channel and what it serves: a W&B project's runs (``project`` None: none), its launches, its rules."""

    channel: str | int
    project: str | None = None
    entity: str | None = None
    experiment_script: Path | None = None
    launch_roles: tuple[str, ...] = ()
    launch_users: tuple[int, ...] = ()
    metric: str = "loss"
    metric_goal: Literal["min", "max"] = "min"
    #: The container image its jobs run in (ADJUTANT_LAUNCHER=container); None: ADJUTANT_CONTAINER_IMAGE.
    image: str | None = None
    #: Where its jobs run (local, slurm, ray, container); None: ADJUTANT_LAUNCHER.
    launcher: str | None = None
    #: Its own alert policy, (kind, minutes of grace: 0 at once, None notify) pairs over ADJUTANT_ALERT_POLICY's;
    #: None: the global one only.
    alert_policy: tuple[tuple[str, float | None], ...] | None = None

    @property
    def project_key(self) -> str | None:
        """How the stores name the project (``entity/project``)."""
        return None if self.project is None else f"{self.entity or ''}/{self.project}"

    @property
    def project_label(self) -> str:
        return "" if self.project is None else (f"{self.entity}/{self.project}" if self.entity else self.project)

    def channel_label(self) -> str:
        return f"<#{self.channel}>" if isinstance(self.channel, int) else f"#{self.channel}"


@dataclass(frozen=True)
class ProjectsFile:
    """A parsed projects file: its tables, checked, with paths made absolute (defaults filled in later)."""

    path: Path
    entries: tuple[Mapping[str, Any], ...]


def _line_of(text: str, index: int, key: str | None = None) -> int:
    """The line of the ``index``-th ``[[projects]]`` table (or of ``key`` in it)."""
    lines = text.splitlines()
    starts = [n for n, line in enumerate(lines, 1) if line.strip().startswith("[[projects]]")]
    if index >= len(starts):
        return 1
    start = starts[index]
    end = starts[index + 1] if index + 1 < len(starts) else len(lines) + 1
    if key is not None:
        for number in range(start, end):
            if re.match(rf"\s*{re.escape(key)}\s*=", lines[number - 1]):
                return number
    return start


def load_projects_file(path: Path, check_script: Callable[[str], Path]) -> ProjectsFile:
    """Read and check a projects file; raises :class:`ProjectsFileError` with every problem found."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as error:
        raise ProjectsFileError(f"{path}: cannot read it ({error})") from None
    import tomllib  # only with a projects file

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ProjectsFileError(f"{path}: not valid TOML: {error}") from None
    problems: list[str] = []
    extra = sorted(set(data) - {"projects"})
    if extra:
        problems.append(f"{path}: unknown top-level key(s) {', '.join(extra)}: only [[projects]] tables belong here")
    tables = data.get("projects")
    if not isinstance(tables, list) or not tables:
        problems.append(f'{path}: no [[projects]] table: add one with project = "..." and channel = "..."')
        raise ProjectsFileError("\n".join(problems))
    entries = []
    channels: dict[str, int] = {}
    for index, table in enumerate(tables):
        where = f"{path}:{_line_of(text, index)}"
        entry, found = _check_table(table, path.parent, check_script)
        problems += [f"{path}:{_line_of(text, index, key)}: {problem}" for key, problem in found]
        channel = entry.get("channel")
        if channel is not None:
            if str(channel) in channels:
                problems.append(
                    f"{where}: channel {channel} already holds the project of the table at line"
                    f" {channels[str(channel)]}: one channel holds one project (several channels may watch one project)"
                )
            channels.setdefault(str(channel), _line_of(text, index))
        entries.append(entry)
    if problems:
        raise ProjectsFileError("\n".join(problems))
    return ProjectsFile(path, tuple(entries))


def _check_table(
    table: Any, folder: Path, check_script: Callable[[str], Path]
) -> tuple[dict[str, Any], list[tuple[str | None, str]]]:
    problems: list[tuple[str | None, str]] = []
    if not isinstance(table, dict):
        return {}, [(None, "each [[projects]] entry must be a table")]
    entry: dict[str, Any] = {}
    for key, value in table.items():
        if key not in KEYS:
            import difflib

            close = difflib.get_close_matches(str(key), list(KEYS), n=1)
            hint = f" (did you mean {close[0]}?)" if close else f"; known keys: {', '.join(KEYS)}"
            problems.append((key, f"unknown key {key!r}{hint}"))
            continue
        try:
            entry[key] = _value(key, value, folder, check_script)
        except ValueError as error:
            problems.append((key, f"{key} must be {KEYS[key]}: {error}"))
    for required in ("project", "channel"):
        if required not in table:
            problems.append((None, f"{required} is required in each [[projects]] table"))
    return entry, problems


def _value(key: str, value: Any, folder: Path, check_script: Callable[[str], Path]) -> Any:
    if key == "alert_policy":
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"got {value!r}")
        from adjutant.alerts import parse_policies  # only with a policy in the file

        return tuple(parse_policies(value).items())  # ValueError: says which part is wrong
    if key == "launcher":
        if value not in LAUNCHERS:
            raise ValueError(f"got {value!r}")
        return value
    if key == "image":
        if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value.strip()):
            raise ValueError(f"got {value!r}")
        return value.strip()
    if key in ("project", "entity", "metric"):
        if not isinstance(value, str) or (key != "metric" and not _NAME.match(value)) or not value.strip():
            raise ValueError(f"got {value!r}")
        return value
    if key == "metric_goal":
        if value not in ("min", "max"):
            raise ValueError(f"got {value!r}")
        return value
    if key == "channel":
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        if isinstance(value, str) and value.strip():
            text = value.strip().lstrip("#")
            return int(text) if text.isdecimal() else text
        raise ValueError(f"got {value!r}")
    if key == "experiment_script":
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"got {value!r}")
        full = Path(os.path.expanduser(value))
        try:
            return check_script(str(full if full.is_absolute() else folder / full))
        except Exception as error:  # the script check says what is wrong and how to fix it
            raise ValueError(str(error)) from None
    if key == "launch_roles":
        if not isinstance(value, list) or not all(isinstance(v, str | int) and not isinstance(v, bool) for v in value):
            raise ValueError(f"got {value!r}")
        return tuple(str(v) for v in value)
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ValueError(f"got {value!r}")
    return tuple(value)


def routes_from(
    file: ProjectsFile | None,
    *,
    channel: str | int,
    project: str | None,
    entity: str | None,
    experiment_script: Path | None,
    launch_roles: Sequence[str],
    launch_users: Sequence[int],
    metric: str,
    metric_goal: str,
) -> tuple[ProjectRoute, ...]:
    """The routes: one per table of the file (defaults from the global settings), else the one of the
    environment's one-project shortcut."""
    defaults: dict[str, Any] = {  # keyed like a file's table
        "entity": entity,
        "launch_roles": tuple(launch_roles),
        "launch_users": tuple(launch_users),
        "metric": metric,
        "metric_goal": metric_goal,
    }
    if file is None:
        return (ProjectRoute(channel=channel, project=project, experiment_script=experiment_script, **defaults),)
    routes = []
    for entry in file.entries:
        values = {**defaults, **entry}
        if "launch_roles" in entry or "launch_users" in entry:  # a table's own rule replaces the global one
            values["launch_roles"] = entry.get("launch_roles", ())
            values["launch_users"] = entry.get("launch_users", ())
        routes.append(ProjectRoute(**values))
    return tuple(routes)
