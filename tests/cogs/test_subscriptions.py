"""Personal subscriptions end to end: direct messages for a project's events, exactly once across a restart, a member
with closed DMs blocking nobody, and "your queue is done" (by DM for `mine`, else a mention in the channel)."""

from __future__ import annotations

import asyncio

import pytest

from tests.cogs.conftest import WANDB_ENV, reporting_ready
from tests.cogs.test_alert_cards import say
from tests.cogs.test_experiments import launch, launch_env, wait_report
from tests.conftest import eventually
from tests.standins.discord_standin import DiscordStandIn
from tests.standins.wandb_standin import WandbStandIn


def dm_titles(discord: DiscordStandIn, name: str) -> list[str]:
    return [e.get("title", "") for m in discord.dms(name) for e in m["embeds"]]


async def test_subscribers_get_each_event_once_across_a_restart_and_closed_dms_block_nobody(
    start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn, out_dir, monkeypatch
) -> None:
    monkeypatch.delenv("WANDB_SERVICE")  # out_dir's fake one would capture this process's wandb client
    discord_standin.dms_closed.add("member")
    async with start_adjutant(WANDB_ENV) as bot:
        await reporting_ready(bot)
        assert "Subscription #1" in await say(discord_standin, "$subscribe finished crashed", "member")
        assert "Subscription #2" in await say(discord_standin, "$subscribe proj finished", "teammate")
        assert "Not subscribed: 'finishd' is not an event" in await say(discord_standin, "$subscribe finishd")
        assert "No project `other`" in await say(discord_standin, "$subscribe other finished")
        assert "#2 `team/proj`: finished" in await say(discord_standin, "$subscriptions", "teammate")
        wandb_standin.create_run("r1", display_name="sub-run", state="running")
        await eventually(lambda: any("sub-run started" in t for t in _channel_titles(discord_standin)), timeout=20)
        wandb_standin.update_run("r1", state="finished")
        await eventually(
            lambda: any("sub-run finished" in t for t in dm_titles(discord_standin, "teammate")), timeout=20
        )
        assert dm_titles(discord_standin, "member") == [], "closed DMs: nothing delivered, nothing blocked"
        assert not any("started" in t for t in dm_titles(discord_standin, "teammate")), "only the events asked for"
    async with start_adjutant(WANDB_ENV):
        await asyncio.sleep(3)
        wandb_standin.create_run("r2", display_name="second-run", state="crashed")
        await eventually(lambda: any("second-run" in t for t in _channel_titles(discord_standin)), timeout=20)
        await asyncio.sleep(2)
        titles = dm_titles(discord_standin, "teammate")
        assert sum("sub-run finished" in t for t in titles) == 1, "exactly once, across the restart"
        assert not any("second-run" in t for t in titles), "crashed was not asked for"
        assert "Removed 1 subscription(s)" in await say(discord_standin, "$unsubscribe 2", "teammate")
        assert "No subscription `2`" in await say(discord_standin, "$unsubscribe 2", "teammate")


def _channel_titles(discord: DiscordStandIn) -> list[str]:
    return [e.get("title", "") for m in discord.sent("general") for e in m["embeds"]]


async def test_your_queue_is_done_by_dm_for_mine_else_in_the_channel(
    start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn, out_dir, monkeypatch
) -> None:
    monkeypatch.delenv("WANDB_SERVICE")
    env = {**WANDB_ENV, **launch_env(ADJUTANT_LAUNCH_ROLES="ml-team,Admin", ADJUTANT_MAX_CONCURRENT="2")}
    async with start_adjutant(env):
        await discord_standin.wait_for_message(lambda m: bool(m["embeds"]), timeout=20)
        subscribed = await say(discord_standin, "$subscribe mine", "admin")
        assert "Subscription #1: I will send you a direct message when each of your jobs ends" in subscribed
        mine = [await launch(discord_standin, '{"sleep": 1}'), await launch(discord_standin, '{"exit": 3}')]
        theirs = [
            await launch(discord_standin, '{"sleep": 1}', author="teammate"),
            await launch(discord_standin, '{"sleep": 1}', author="teammate"),
        ]
        for job_id in mine + theirs:
            await wait_report(discord_standin, job_id)
        await eventually(
            lambda: any("Your queue is done" in t for t in dm_titles(discord_standin, "admin")), timeout=20
        )
        titles = dm_titles(discord_standin, "admin")
        done = next(t for t in titles if "Your queue is done" in t)
        assert "2 jobs: 1 succeeded, 1 failed" in done and mine[1] in done
        assert (
            sum(f"Experiment {mine[0]} " in t for t in titles) == 1
            and sum(f"Experiment {mine[1]} " in t for t in titles) == 1
        )
        teammate = discord_standin.member("teammate")

        def note() -> dict | None:
            return next((m for m in discord_standin.sent("general") if m["content"] == f"<@{teammate.id}>"), None)

        await eventually(lambda: note() is not None, timeout=20)
        message = note()
        assert message is not None and "Your queue is done: 2 jobs: 2 succeeded" in message["embeds"][0]["title"]
        mentions = discord_standin.allowed_mentions[int(message["id"])]
        assert mentions["parse"] == [] and [str(u) for u in mentions["users"]] == [str(teammate.id)]
        assert discord_standin.dms("teammate") == [], "no subscription: no DM"


def _all_titles(discord: DiscordStandIn) -> list[str]:
    return [e.get("title", "") for m in discord.sent() for e in m["embeds"]]


async def test_a_subscriber_to_finished_hears_of_a_launched_runs_finish_once(
    start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn, out_dir, monkeypatch
) -> None:
    """Issue 20: a subscriber to `finished` got nothing when a launched job's run finished (only the end report
    existed). Every finished run of the project reaches them, Adjutant's launched ones included, once; the channel
    still hears the end from the job's end report alone."""
    from tests.cogs.test_experiments import received

    monkeypatch.delenv("WANDB_SERVICE")
    async with start_adjutant({**WANDB_ENV, **launch_env()}) as bot:
        await reporting_ready(bot)
        assert "Subscription #1" in await say(discord_standin, "$subscribe finished", "teammate")
        job_id = await launch(discord_standin, '{"sleep": 2}')
        await eventually(lambda: (out_dir / f"{job_id}.json").exists(), timeout=15)
        run_id = received(out_dir, job_id)["env"]["WANDB_RUN_ID"]
        wandb_standin.create_run(run_id, display_name="launched-run", state="running")  # what wandb.init() does
        await eventually(lambda: any("launched-run started" in t for t in _all_titles(discord_standin)), timeout=15)
        wandb_standin.update_run(run_id, state="finished", summary={"loss": 0.25})
        await wait_report(discord_standin, job_id)
        await eventually(
            lambda: any("launched-run finished" in t for t in dm_titles(discord_standin, "teammate")), timeout=20
        )
        await asyncio.sleep(3)  # more polls: nothing twice
    assert sum("launched-run finished" in t for t in dm_titles(discord_standin, "teammate")) == 1
    assert not any("launched-run finished" in t for t in _channel_and_thread_titles(discord_standin))


def _channel_and_thread_titles(discord: DiscordStandIn) -> list[str]:
    direct = {dm["id"] for dm in discord.dm_channels.values()}
    return [e.get("title", "") for m in discord.sent() if m["channel_id"] not in direct for e in m["embeds"]]


async def test_after_a_cancel_the_runs_silence_is_not_a_stall(
    start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn, out_dir, monkeypatch
) -> None:
    """Issue 20: a cancelled job's W&B run stays "running" in W&B; Adjutant then posted "stalled" in the job's thread
    with a mention, and DMed subscribers. A run whose job Adjutant ended is not judged; its end is told once, by the
    end report. (A run that really stalls meanwhile still is: the rule is on.)"""
    from tests.cogs.test_experiments import received

    monkeypatch.delenv("WANDB_SERVICE")
    env = {**WANDB_ENV, **launch_env(), "ADJUTANT_STALL_MINUTES": "0.1"}  # 6 s without a heartbeat
    async with start_adjutant(env) as bot:
        await reporting_ready(bot)
        assert "Subscription #1" in await say(discord_standin, "$subscribe stalled alerts", "teammate")
        job_id = await launch(discord_standin, '{"sleep": 600}')
        await eventually(lambda: (out_dir / f"{job_id}.json").exists(), timeout=15)
        run_id = received(out_dir, job_id)["env"]["WANDB_RUN_ID"]
        wandb_standin.create_run(run_id, display_name="cancelled-run", state="running")

        async def heartbeat() -> None:  # the training process is alive until the cancel
            while True:
                wandb_standin.update_run(run_id, heartbeat_at=wandb_standin.now())
                await asyncio.sleep(0.5)

        beating = asyncio.create_task(heartbeat())
        await eventually(lambda: any("cancelled-run started" in t for t in _all_titles(discord_standin)), timeout=15)
        await say(discord_standin, f"$cancel {job_id}")
        await wait_report(discord_standin, job_id)
        beating.cancel()  # killed: W&B hears nothing more, and keeps the run "running"
        wandb_standin.create_run("plain", display_name="really-stuck", state="running")  # no heartbeat either
        await eventually(lambda: any("really-stuck stalled" in t for t in _all_titles(discord_standin)), timeout=30)
        await asyncio.sleep(2)
    titles = _all_titles(discord_standin)
    assert not any("cancelled-run" in t and "stalled" in t for t in titles), titles
    assert not any("cancelled-run" in t for t in dm_titles(discord_standin, "teammate"))
    assert any("really-stuck stalled" in t for t in dm_titles(discord_standin, "teammate"))


# --- the `sweeps` event: parsing and the told-once queueing (no bot) ------------------------------------------------


def test_sweeps_is_an_event_in_all_and_in_the_default_set() -> None:
    from adjutant import subscriptions

    assert subscriptions.parse_events(["sweeps"]) == ("sweeps",)
    assert subscriptions.parse_events(["finished,SWEEPS", "sweeps"]) == ("finished", "sweeps")
    everything = subscriptions.parse_events(["all"])
    assert "sweeps" in everything and "alerts" in everything and "mine" not in everything
    assert "sweeps" in subscriptions.DEFAULT_EVENTS
    with pytest.raises(ValueError, match=r"'sweep' is not an event; choose from .*sweeps"):
        subscriptions.parse_events(["sweep"])
    wanting = subscriptions.Subscription(1, 7, "team/proj", ("sweeps",))
    assert wanting.wants("sweeps") and not wanting.wants("finished") and not wanting.wants("rule:3")
    others = subscriptions.Subscription(2, 8, "team/proj", ("finished", "alerts", "mine"))
    assert not others.wants("sweeps"), "alerts is not sweeps"


def test_a_sweeps_end_is_marked_told_with_its_subscribers_copies_once(tmp_path) -> None:
    import datetime as dt

    from adjutant import subscriptions
    from adjutant.db.models import SweepKind, SweepState
    from adjutant.store import Store
    from adjutant.sweeps.store import SweepLaunch, SweepStore

    now = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
    runs = Store(tmp_path / "adjutant.sqlite3")
    sweeps = SweepStore(runs.database)
    try:
        sweep = sweeps.create(
            kind=SweepKind.SEARCH, route="general", project="proj", entity="team", channel_id=100, requested_by_id=7,
            requested_by="ada", config=None, method="grid", seed=None, parallel=1, run_cap=None, wandb_sweep_id=None,
            launch=SweepLaunch(script="/srv/train.py"), now=now,
        )  # fmt: skip
        first = runs.subscribe(11, "team/proj", ("sweeps",))
        # a second subscription of the same member (``all``): still one message
        runs.subscribe(11, "team/proj", subscriptions.parse_events(["all"]))
        runs.subscribe(12, "team/proj", ("finished", "alerts"))
        runs.subscribe(13, "team/other", ("sweeps",))
        gone = runs.subscribe(14, "team/proj", ("sweeps",))
        with runs.transaction() as db:
            found = subscriptions.sweep_subscribers(db, ["team/proj", "team/proj"])
        assert [(s.id, s.user_id) for s in found] == [(first, 11), (gone, 14)]
        runs.unsubscribe(14, None)  # ended between the look-up and the end: no copy
        copies = [(s, {"title": f"Sweep {sweep.id} finished"}) for s in found]
        with runs.transaction() as db:
            assert not subscriptions.tell_sweep_end(db, sweep.id, "2026-12-07T12:00:00", copies), "not ended yet"
        assert runs.pending_destinations(("dm:",)) == []
        assert sweeps.set_state(sweep.id, SweepState.FINISHED, now=now)
        with runs.transaction() as db:
            assert subscriptions.tell_sweep_end(db, sweep.id, "2026-12-07T12:00:01", copies)
        with runs.transaction() as db:
            assert not subscriptions.tell_sweep_end(db, sweep.id, "2026-12-07T12:00:02", copies), "told once"
        assert runs.pending_destinations(("dm:",)) == ["dm:11"]
        (item,) = runs.pending("dm:11")
        assert item.event == subscriptions.SWEEP_END and item.run_id == sweep.id and item.subscription_id == first
        told = sweeps.get(sweep.id)
        assert told is not None and told.told_at is not None and sweeps.ended_untold() == []
        assert not sweeps.mark_told(sweep.id, now), "the same marker the requester's message uses"
    finally:
        sweeps.close()
        runs.close()
