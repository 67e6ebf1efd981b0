"""A project's own alert policy (``alert_policy`` in its ``[[projects]]`` table of ADJUTANT_CONFIG), end to end: real
discord.py ↔ Discord stand-in, real supervisor and script processes, the real wandb client ↔ W&B stand-in. With no
ADJUTANT_ALERT_POLICY, a GPU-idle job launched in the channel of the project whose table says
``gpu-idle=stop after 1`` gets a card that says when it is stopped, and is stopped once at that deadline; the same
job in the channel of a project without one gets a notify-only card and is never stopped. A malformed
``alert_policy`` is refused by ``--check`` and at startup, with the file's line named."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import sqlite3
import sys
from pathlib import Path

from adjutant.clock import utcnow
from tests.cogs.conftest import TOKEN, reporting_ready
from tests.cogs.test_alert_cards import button, cards
from tests.cogs.test_experiments import SCRIPT, acks, job_id_of, received, wait_report
from tests.conftest import eventually, subprocess_env
from tests.standins.discord_standin import DiscordStandIn
from tests.standins.wandb_standin import WandbStandIn

IDLE_CARD = "leaves its GPUs idle"
#: Project A ("proj", #general) stops a GPU-idle job a minute after its card; project B ("vision", #experiments)
#: names no policy, and there is no global one: it only notifies.
PROJECTS = f"""
[[projects]]
project = "proj"
entity = "team"
channel = "general"
experiment_script = "{SCRIPT}"
alert_policy = "gpu-idle=stop after 1"

[[projects]]
project = "vision"
entity = "team"
channel = "experiments"
experiment_script = "{SCRIPT}"
"""


def env_for(config: Path) -> dict[str, str]:
    return {
        "ADJUTANT_CONFIG": str(config),
        "ADJUTANT_CHANNEL": "",  # the file routes the channels (base_env's one-project shortcut is off)
        "ADJUTANT_POLL_SECONDS": "1",
        "ADJUTANT_GPU_IDLE_MINUTES": "0.1",
        "ADJUTANT_CANCEL_GRACE_SECONDS": "1",
        "ADJUTANT_MAX_CONCURRENT": "2",  # a job of each project at once
    }


async def launch_in(discord: DiscordStandIn, channel: str, params: str) -> str:
    before = len(acks(discord))
    await discord.post(f"$experiment {params}", channel=channel)
    await eventually(lambda: len(acks(discord)) > before, timeout=10)
    return job_id_of(acks(discord)[before])


def idle_cards(discord: DiscordStandIn, run_name: str) -> list[dict]:
    return [m for m in cards(discord, IDLE_CARD) if run_name in m["embeds"][0]["title"]]


async def idle_job(
    discord: DiscordStandIn, wandb: WandbStandIn, out_dir: Path, channel: str, project: str, run_name: str
) -> str:
    """A job launched in ``channel`` whose W&B run (in ``project``) reports its GPU at 0 %; its id."""
    job_id = await launch_in(discord, channel, '{"sleep": 120}')
    await eventually(lambda: (out_dir / f"{job_id}.json").exists(), timeout=15)
    job_env = received(out_dir, job_id)["env"]
    assert job_env["WANDB_PROJECT"] == project, "the channel's project"
    run_id = job_env["WANDB_RUN_ID"]
    wandb.create_run(run_id, display_name=run_name, state="running", summary={"loss": 1.0, "_step": 1}, project=project)
    wandb.update_run(run_id, project=project, system={"system.gpu.0.gpu": 0})
    return job_id


def in_channel(discord: DiscordStandIn, message: dict) -> str:
    """The channel a message is in, or its thread's parent channel."""
    thread = next((t for t in discord.threads if t["id"] == message["channel_id"]), None)
    return message["channel_id"] if thread is None else thread["parent_id"]


def policy_notes(discord: DiscordStandIn, job_id: str) -> list[dict]:
    return cards(discord, f"Job {job_id} stopped: GPU idle for")


async def test_the_projects_file_policy_stops_its_projects_idle_job_and_only_notifies_for_the_other(
    start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn, tmp_path: Path, out_dir, monkeypatch
) -> None:
    monkeypatch.delenv("WANDB_SERVICE")  # out_dir's fake one would capture this process's wandb client
    wandb_standin.projects[("team", "vision")] = {}
    config = tmp_path / "adjutant.toml"
    config.write_text(PROJECTS)
    async with start_adjutant(env_for(config)) as bot:
        assert bot.settings.alert_policy == {}, "no global policy: only the file's"
        await reporting_ready(bot)
        stopped = await idle_job(discord_standin, wandb_standin, out_dir, "general", "proj", "idle-a")
        notified = await idle_job(discord_standin, wandb_standin, out_dir, "experiments", "vision", "idle-b")
        await eventually(lambda: bool(idle_cards(discord_standin, "idle-a")), timeout=30)
        await eventually(lambda: bool(idle_cards(discord_standin, "idle-b")), timeout=30)
        card_a = idle_cards(discord_standin, "idle-a")[0]
        card_b = idle_cards(discord_standin, "idle-b")[0]
        assert in_channel(discord_standin, card_a) == str(discord_standin.channel_id("general"))
        assert in_channel(discord_standin, card_b) == str(discord_standin.channel_id("experiments"))

        # A: the card says when the job is stopped, and Keep running comes first
        description = card_a["embeds"][0]["description"]
        deadline = re.search(r"stopped <t:(\d+):R> unless someone presses \*\*Keep running\*\*", description)
        assert deadline is not None, description
        assert "Policy (stop after 1 min)" in description
        due = dt.datetime.fromtimestamp(int(deadline[1]), dt.UTC)
        assert dt.timedelta(seconds=40) < due - utcnow() <= dt.timedelta(seconds=61), "a minute after the alert"
        assert discord_standin.buttons(card_a)[0].startswith("adjutant:alert:keep:"), "Keep running comes first"
        button(discord_standin, card_a, "stop")

        # B: notify only: no deadline, no Keep running, Stop is still there for a person to press
        description = card_b["embeds"][0].get("description") or ""
        assert "Policy" not in description and "<t:" not in description and "Keep running" not in description
        assert not any(b.startswith("adjutant:alert:keep:") for b in discord_standin.buttons(card_b)), "no Keep"
        button(discord_standin, card_b, "stop")

        actions = bot.get_cog("Experiments").alert_actions
        scheduler = bot.get_cog("Experiments").scheduler
        assert await actions.act_due(due - dt.timedelta(seconds=1)) == 0, "nothing before the deadline"
        assert await actions.act_due(due + dt.timedelta(seconds=1)) == 1, "at A's deadline: A's job, and only it"
        assert await actions.act_due(due + dt.timedelta(hours=1)) == 0, "never twice, and never B's"
        report = await wait_report(discord_standin, stopped, timeout=30)
        assert report["embeds"][0]["title"] == f"⏹️ Experiment {stopped} cancelled"
        assert report["embeds"][0]["description"].startswith("**Cancelled by Adjutant (policy: GPU idle for ")
        await eventually(lambda: bool(policy_notes(discord_standin, stopped)), timeout=10)
        await asyncio.sleep(2)
        notes = policy_notes(discord_standin, stopped)
        assert len(notes) == 1 and notes[0]["embeds"][0]["title"].endswith("(policy)"), notes
        assert notes[0]["channel_id"] == report["channel_id"], "in the job's thread"

        job = await scheduler.get(notified)
        assert job is not None and job.state == "running" and job.cancelled_by is None, "B's job is never stopped"
        assert policy_notes(discord_standin, notified) == []
        assert len(idle_cards(discord_standin, "idle-a")) == 1 and len(idle_cards(discord_standin, "idle-b")) == 1
        with sqlite3.connect(bot.settings.state_dir / "adjutant.sqlite3") as db:
            states = dict(db.execute("SELECT project, action_state FROM alerts WHERE kind='gpu-idle'").fetchall())
        assert states == {"team/proj": "done", "team/vision": "none"}, states
        await scheduler.cancel(notified, "test")


async def test_a_malformed_alert_policy_in_the_projects_file_is_refused_by_check_and_at_startup(
    tmp_path: Path,
) -> None:
    """``python -m adjutant --check`` and ``python -m adjutant`` both name the table's line and what is wrong; the bot
    never connects."""
    config = tmp_path / "adjutant.toml"
    config.write_text(PROJECTS.replace("gpu-idle=stop after 1", "gpu-idle=stop after soon"))
    line = PROJECTS.splitlines().index('alert_policy = "gpu-idle=stop after 1"') + 1
    expected = f"{config}:{line}: alert_policy must be per alert kind"
    why = "'stop after soon' is not a policy: notify, stop, or stop after <minutes>"
    async with DiscordStandIn(token=TOKEN) as standin:
        env = subprocess_env(standin, {"ADJUTANT_STATE_DIR": str(tmp_path / "state"), "HOME": str(tmp_path)})
        for args in (("--check", "--config", str(config)), ("--config", str(config))):
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "adjutant", *args,
                cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
            said = stdout.decode() + stderr.decode()
            assert process.returncode not in (0, None), (args, said)
            assert expected in said and why in said, (args, said)
        assert not standin.connected.is_set(), "refused before connecting"
