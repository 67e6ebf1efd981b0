"""Preemption end to end on the local launcher: the real discord.py client against the Discord stand-in, the real
supervisor and script processes (the script notes each start, SIGUSR1 and SIGTERM with its time and W&B run id), a
real SQLite file; ADJUTANT_GPUS=0,1 and a short grace."""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from pathlib import Path

from tests.cogs.test_experiments import launch, launch_env, received, wait_report
from tests.cogs.test_gpus import say, say_embed, state_db
from tests.conftest import eventually
from tests.standins.discord_standin import DiscordStandIn

GRACE = 2.0


def events(out_dir: Path, job_id: str) -> list[tuple[str, float, str]]:
    """What the script noted: (start | usr1 | term | checkpointed, time, WANDB_RUN_ID)."""
    path = out_dir / f"{job_id}.events"
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        what, when, run = [*line.split(" "), "", ""][:3]
        found.append((what, float(when), run))
    return found


def kinds(out_dir: Path, job_id: str) -> list[str]:
    return [what for what, _, _ in events(out_dir, job_id)]


def row(bot, job_id: str) -> sqlite3.Row:
    with sqlite3.connect(state_db(bot), timeout=30) as db:
        db.row_factory = sqlite3.Row
        return db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()


def started_at(bot, job_id: str) -> float:
    value = row(bot, job_id)["started_at"]
    return dt.datetime.fromisoformat(value).timestamp()


def env(**extra: str) -> dict[str, str]:
    return launch_env(
        ADJUTANT_GPUS="0,1",
        ADJUTANT_PREEMPT_GRACE_SECONDS=str(GRACE),
        ADJUTANT_CANCEL_GRACE_SECONDS="1",
        ADJUTANT_RETRIES="0",
        **extra,
    )


def titles(discord: DiscordStandIn, start: str) -> list[str]:
    return [e.get("title", "") for m in discord.sent() for e in m["embeds"] if e.get("title", "").startswith(start)]


async def test_a_high_job_preempts_one_low_job_which_comes_back_as_the_same_run(
    start_adjutant, discord_standin: DiscordStandIn, out_dir: Path
) -> None:
    async with start_adjutant(env()) as bot:
        low = '--priority low --preemptible {"sleep": 8, "usr1": "exit", "usr1_delay": 0.5}'
        a = await launch(discord_standin, low)
        await eventually(lambda: kinds(out_dir, a) == ["start"], timeout=15)
        b = await launch(discord_standin, low)
        await eventually(lambda: kinds(out_dir, b) == ["start"], timeout=15)
        gpus = await say_embed(discord_standin, "$gpus")
        assert "low, preemptible" in gpus["description"]

        high = await launch(discord_standin, '--priority high {"sleep": 1}')
        await eventually(lambda: "usr1" in kinds(out_dir, a) + kinds(out_dir, b), timeout=10)
        victim, other = (b, a) if "usr1" in kinds(out_dir, b) else (a, b)
        assert victim == b, "the most recently started"
        await eventually(lambda: (out_dir / f"{high}.json").exists(), timeout=GRACE + 10)
        exited = next(when for what, when, _ in events(out_dir, victim) if what == "checkpointed")
        assert started_at(bot, high) - exited <= GRACE + 2, "the high job starts within grace + 2 s of the exit"
        assert received(out_dir, high)["env"]["CUDA_VISIBLE_DEVICES"] in ("0", "1")

        await wait_report(discord_standin, high, timeout=20)
        await eventually(lambda: kinds(out_dir, victim).count("start") == 2, timeout=20)  # ADJUTANT_RETRIES=0
        starts = [run for what, _, run in events(out_dir, victim) if what == "start"]
        assert starts[0] == starts[1] == row(bot, victim)["wandb_run_id"], "the same W&B run"
        assert (row(bot, victim)["attempt"], row(bot, victim)["preemptions"]) == (2, 1)
        assert "usr1" not in kinds(out_dir, other), "exactly one victim"
        assert titles(discord_standin, f"⏏️ Job {victim} preempted by {high} (high)")
        assert titles(discord_standin, f"⏏️ Job {high} preempts {victim}")
        assert not titles(discord_standin, f"🔁 Job {victim}"), "not a retry"
        assert not [t for t in titles(discord_standin, "") if victim in t and "failed" in t.lower()]
        audit = await say_embed(discord_standin, "$audit")
        assert "preempt" in str(audit)
        for job in (a, b):
            await say(discord_standin, f"$cancel {job}")
        for job in (a, b):
            await wait_report(discord_standin, job, timeout=20)


async def test_a_job_that_is_not_preemptible_is_never_signalled_and_one_that_ignores_usr1_is_killed(
    start_adjutant, discord_standin: DiscordStandIn, out_dir: Path
) -> None:
    async with start_adjutant(env()) as bot:
        keep = await launch(discord_standin, '--priority low {"sleep": 30, "usr1": "ignore"}')
        await eventually(lambda: kinds(out_dir, keep) == ["start"], timeout=15)
        stubborn = await launch(
            discord_standin, '--priority low --preemptible {"sleep": 30, "usr1": "ignore", "ignore_term": true}'
        )
        await eventually(lambda: kinds(out_dir, stubborn) == ["start"], timeout=15)
        high = await launch(discord_standin, '--priority high {"sleep": 0}')
        await wait_report(discord_standin, high, timeout=GRACE + 20)
        usr1 = next(when for what, when, _ in events(out_dir, stubborn) if what == "usr1")
        log = Path(row(bot, stubborn)["log_path"]).read_text()
        killed = re.search(r"\[adjutant (\S+)\] job \S+ ended: killed by signal 9", log)
        assert killed is not None, log
        assert dt.datetime.fromisoformat(killed[1]).timestamp() - usr1 >= GRACE, "SIGUSR1 the grace before SIGKILL"
        assert kinds(out_dir, keep) == ["start"], "never signalled"
        await eventually(lambda: kinds(out_dir, stubborn).count("start") == 2, timeout=20)
        for job in (keep, stubborn):
            await say(discord_standin, f"$cancel {job}")
        for job in (keep, stubborn):
            await wait_report(discord_standin, job, timeout=20)


async def test_a_high_request_from_a_member_capped_at_normal_is_refused_with_the_reason(
    start_adjutant, discord_standin: DiscordStandIn, out_dir: Path
) -> None:
    async with start_adjutant(env(ADJUTANT_LAUNCH_ROLES="ml-team,Admin", ADJUTANT_PRIORITY_ROLES="high=Admin")):
        refused = await say(discord_standin, '$experiment --priority high {"sleep": 0}', author="teammate")
        assert refused == (
            "Not launched: --priority high is for the roles Admin (ADJUTANT_PRIORITY_ROLES); you may use --priority"
            " normal."
        )
        job = await launch(discord_standin, '--priority high {"sleep": 0}')  # an Admin may
        await wait_report(discord_standin, job)
