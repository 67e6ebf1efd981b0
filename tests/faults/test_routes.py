"""Faults: access follows the route. Two served channels with different launch rules (#general: ml-team;
#experiments: Admin), members who can see one or both: every action on a job (cancel, its button, logs, rerun,
listing, autocomplete) checks the job's own route, never the channel where it is asked."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.cogs.test_alert_cards import answer_to, say
from tests.cogs.test_experiments import SCRIPT, acks, job_id_of
from tests.conftest import eventually
from tests.standins import discord_rules as rules
from tests.standins.discord_standin import DiscordStandIn
from tests.standins.wandb_standin import WandbStandIn

SECRET = "s3cr3t-value"


def two_routes(tmp_path: Path) -> Path:
    path = tmp_path / "adjutant.toml"
    path.write_text(
        f"""
[[projects]]
project = "proj"
entity = "team"
channel = "general"
experiment_script = "{SCRIPT}"
launch_roles = ["ml-team"]

[[projects]]
project = "private"
entity = "team"
channel = "experiments"
experiment_script = "{SCRIPT}"
launch_roles = ["Admin"]
"""
    )
    return path


async def test_every_action_on_a_job_follows_the_jobs_route(
    start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn, tmp_path: Path, out_dir, monkeypatch
) -> None:
    monkeypatch.delenv("WANDB_SERVICE")
    wandb_standin.projects[("team", "private")] = {}
    member = discord_standin.member("member")  # no role; cannot see #experiments
    discord_standin.channels["experiments"]["permission_overwrites"].append(
        {"id": str(member.id), "type": 1, "allow": "0", "deny": str(rules.PERMISSIONS["view_channel"])}
    )
    env = {"ADJUTANT_CONFIG": str(two_routes(tmp_path)), "ADJUTANT_CHANNEL": "", "ADJUTANT_CANCEL_GRACE_SECONDS": "1"}
    async with start_adjutant(env) as bot:
        scheduler = bot.get_cog("Experiments").scheduler
        await discord_standin.post(f'$experiment {{"sleep": 30, "secret_param": "{SECRET}"}}', channel="experiments")
        await eventually(lambda: bool(acks(discord_standin)), timeout=10)
        ack = acks(discord_standin)[0]
        private = job_id_of(ack)
        assert (await scheduler.get(private)).route == "experiments"

        # teammate (ml-team) may launch in #general, not in #experiments: no cancel from #general
        refused = await say(discord_standin, f"$cancel {private}", "teammate")
        assert "only members with the role(s) Admin may" in refused
        clicked = await answer_to(discord_standin, ack, f"adjutant:cancel:{private}", "teammate")
        assert clicked["flags"] & 64 and "Admin" in clicked["content"]
        assert (await scheduler.get(private)).state in ("queued", "starting", "running")

        # member sees #general only: the job, its parameters and its log do not exist for them
        listing = await say_any(discord_standin, "$jobs", "member")
        assert private not in listing and SECRET not in listing
        logs = await say(discord_standin, f"$logs {private}", "member")
        assert logs.startswith(f"No job `{private}`")
        choices = await discord_standin.autocomplete("logs", {"job_id": ""}, "job_id", author="member")
        assert all(private not in c["value"] and SECRET not in c["name"] for c in choices)
        rerun = await say(discord_standin, f"$rerun {private}", "member")
        assert "not allowed" in rerun and SECRET not in rerun

        # teammate can see #experiments and may launch in #general: a rerun launches there, with #general's rule
        count = len(acks(discord_standin))
        await discord_standin.post(f"$rerun {private} sleep=0", author="teammate")
        await eventually(lambda: len(acks(discord_standin)) > count, timeout=10)
        copy = await scheduler.get(job_id_of(acks(discord_standin)[count]))
        assert copy.route == "general" and copy.requested_by == "teammate" and copy.params["secret_param"] == SECRET

        # admin may cancel it from #general: the job's route's rule (Admin) is what counts
        stopped = await say(discord_standin, f"$cancel {private}", "admin")
        assert f"job `{private}`" in stopped and "not allowed" not in stopped
        entries = bot.get_cog("Experiments").services.approvals.entries(20)
        refusals = [e for e in entries if e.action == "refused" and e.target == private]
        assert {e.actor for e in refusals} == {"teammate"}, "each refusal on the job is audited under its id"


async def say_any(discord: DiscordStandIn, text: str, author: str) -> str:
    """The bot's answer as text: its content and embeds' text (a paged list is an embed)."""
    count = len(discord.sent())
    await discord.post(text, author=author)
    answer = await discord.wait_for_message(lambda m: bool(m["content"] or m["embeds"]), after=count, timeout=10)
    parts = [answer["content"] or ""]
    for embed in answer["embeds"]:
        parts += [embed.get("title", ""), embed.get("description", "")]
        parts += [f"{f['name']} {f['value']}" for f in embed.get("fields", [])]
    await asyncio.sleep(0)
    return "\n".join(parts)
