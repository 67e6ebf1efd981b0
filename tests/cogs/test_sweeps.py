"""Sweeps that search, end to end: real discord.py ↔ Discord stand-in, real wandb clients ↔ W&B stand-in, real
supervisor and trial processes (tests/scripts/quadratic.py). ``$sweep`` with a W&B configuration → preview → Queue
them → one card, edited in place, trials as jobs attached to one W&B sweep; Pause / Resume / Stop from the card;
the end told once to the requester."""

from __future__ import annotations

import itertools
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cogs.conftest import WANDB_ENV
from tests.conftest import eventually
from tests.standins.discord_standin import DiscordStandIn
from tests.standins.wandb_standin import WandbStandIn

QUADRATIC = Path(__file__).resolve().parent.parent / "scripts" / "quadratic.py"


@pytest.fixture
def out(out_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where each trial records what it received. Unlike ``out_dir`` alone, no ``WANDB_SERVICE`` is left in this
    process's environment (the bot's own wandb client, the sweep service's and the watcher's, is real here), and this
    venv's bin comes first on PATH (the trial script's ``python3``, as a deployment puts its venv first)."""
    monkeypatch.delenv("WANDB_SERVICE", raising=False)
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    return out_dir


def sweep_env(**extra: str) -> dict[str, str]:
    return {
        "ADJUTANT_EXPERIMENT_SCRIPT": str(QUADRATIC),
        "ADJUTANT_CANCEL_GRACE_SECONDS": "1",
        "ADJUTANT_MAX_CONCURRENT": "4",
        **WANDB_ENV,
        **extra,
    }


def yaml_block(text: str) -> str:
    return f"```yaml\n{text.strip()}\n```"


def card_messages(discord: DiscordStandIn, sweep_id: str | None = None) -> list[dict[str, Any]]:
    """The sweep cards the bot posted (as they are now, after their edits)."""
    found = []
    for message in discord.sent():
        title = message["embeds"][0].get("title", "") if message["embeds"] else ""
        if " Sweep sweep-" in title and (sweep_id is None or f"Sweep {sweep_id} ·" in title):
            found.append(message)
    return found


def card(discord: DiscordStandIn, sweep_id: str) -> dict[str, Any]:
    cards = card_messages(discord, sweep_id)
    assert len(cards) == 1, f"one card per sweep, never re-posted: {len(cards)}"
    return cards[0]


def card_state(discord: DiscordStandIn, sweep_id: str) -> str:
    cards = card_messages(discord, sweep_id)
    return cards[0]["embeds"][0]["title"].rsplit("· ", 1)[-1] if cards else ""


async def start_search(discord: DiscordStandIn, text: str, *, author: str = "admin") -> str:
    """``$sweep <text>``, then Queue them; the new sweep's id once its card is posted."""
    count = len(discord.sent())
    await discord.post(f"$sweep {text}", author=author)
    preview = await discord.wait_for_message(
        lambda m: bool(m["embeds"]) and bool(discord.buttons(m)), after=count, timeout=15
    )
    before = {m["id"] for m in card_messages(discord)}
    await discord.click(preview, discord.buttons(preview)[0], author=author)
    await eventually(lambda: any(m["id"] not in before for m in card_messages(discord)), timeout=15)
    new = next(m for m in card_messages(discord) if m["id"] not in before)
    return new["embeds"][0]["title"].split("Sweep ")[1].split(" ·")[0]


async def wait_ended(discord: DiscordStandIn, sweep_id: str, timeout: float = 90) -> None:
    await eventually(lambda: card_state(discord, sweep_id) in ("finished", "stopped"), timeout=timeout, every=0.2)


def records(out: Path) -> list[dict[str, Any]]:
    """What each trial process recorded (argv, sweep and run ids, start and end)."""
    return [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]


def most_at_once(runs: list[dict[str, Any]]) -> int:
    """The most trial processes alive at the same moment."""
    events = sorted([(r["start"], 1) for r in runs] + [(r.get("end", float("inf")), -1) for r in runs])
    alive = most = 0
    for _, change in events:
        alive += change
        most = max(most, alive)
    return most


def ended_messages(discord: DiscordStandIn, sweep_id: str) -> list[dict[str, Any]]:
    """The messages that told the sweep's end (to its requester)."""
    said = (f"Sweep `{sweep_id}` finished:", f"Sweep `{sweep_id}` was stopped:", f"Sweep `{sweep_id}` ended")
    return [m for m in discord.sent() if any(s in (m.get("content") or "") for s in said)]


async def sweep_view(bot: Any, sweep_id: str) -> Any:
    return await bot.get_cog("Sweeps").sweeps.view(sweep_id)


async def loop_turns(bot: Any, turns: int = 3, timeout: float = 60) -> None:
    """Let the Sweeps cog's loop make ``turns`` more whole passes (each: the service's tick, the cards, the ends told):
    the bounded wait of a "nothing more happened" check, counted in the loop's turns rather than in seconds."""
    watch = bot.get_cog("Sweeps").watch
    start = watch.current_loop  # a pass under way now counts for nothing: it may have begun before the call
    await eventually(lambda: watch.current_loop >= start + turns + 1, timeout=timeout, every=0.05)


async def test_random_with_run_cap_6_runs_6_distinct_trials_in_one_wandb_sweep(
    start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn, out: Path
) -> None:
    config = yaml_block(
        """
method: random
metric: {name: loss, goal: minimize}
run_cap: 6
parameters:
  x: {distribution: uniform, min: -1.0, max: 2.0}
  opt: {values: [adam, sgd]}
"""
    )
    async with start_adjutant(sweep_env()) as bot:
        sweep_id = await start_search(discord_standin, f"--parallel 3 --seed 11 {config}")
        await wait_ended(discord_standin, sweep_id)
        view = await sweep_view(bot, sweep_id)
        jobs = await bot.get_cog("Experiments").scheduler.recent(50)
        await eventually(lambda: bool(ended_messages(discord_standin, sweep_id)), timeout=15)
    trials = view.trials
    assert len(trials) == 6 and sorted(t.number for t in trials) == [1, 2, 3, 4, 5, 6]
    params = [dict(t.params) for t in trials]
    assert len({json.dumps(p, sort_keys=True) for p in params}) == 6, "all distinct"
    assert all(-1.0 <= p["x"] <= 2.0 and p["opt"] in ("adam", "sgd") for p in params), "inside the bounds"
    sweep_jobs = [j for j in jobs if j.sweep_id == sweep_id]
    assert len(sweep_jobs) == 6 and {j.id for j in sweep_jobs} == {t.job_id for t in trials}, "one job a trial"
    ran = records(out)
    assert len(ran) == 6 and sorted(json.loads(r["argv"][0])["x"] for r in ran) == sorted(p["x"] for p in params)
    assert all(len(r["argv"]) == 1 for r in ran), "the trial's parameters as the one JSON argument"
    # W&B sees one sweep, and every trial's run is attached to it.
    assert len(wandb_standin.sweeps) == 1
    (wandb_sweep,) = wandb_standin.sweeps.values()
    assert view.sweep.wandb_sweep_id == wandb_sweep.name and wandb_sweep.local_controller
    assert {r["sweep"] for r in ran} == {wandb_sweep.name}
    attached = wandb_standin.sweep_runs(wandb_sweep.name)
    assert sorted(r.name for r in attached) == sorted(t.wandb_run_id for t in trials)
    assert all(t.state == "done" and t.value is not None for t in trials)
    # The card: one message, edited in place to its end; the best trial; the requester told once, pinged alone.
    final = card(discord_standin, sweep_id)["embeds"][0]
    assert final["title"].endswith("· finished") and "**6** done" in final["description"]
    best = min(trials, key=lambda t: t.value)
    assert f"trial {best.number}" in final["fields"][0]["value"]
    told = ended_messages(discord_standin, sweep_id)
    admin = discord_standin.member("admin")
    assert len(told) == 1 and told[0]["content"].startswith(f"<@{admin.id}> Sweep `{sweep_id}` finished: 6 trials")
    sent = [r.json for r in discord_standin.rest("POST", "/messages") if isinstance(r.json, dict)]
    ping = next(b for b in sent if str(b.get("content", "")).startswith(f"<@{admin.id}> Sweep"))
    assert ping["allowed_mentions"]["users"] == [str(admin.id)] or ping["allowed_mentions"]["users"] == [admin.id]
    assert not ping["allowed_mentions"].get("parse"), "nobody else, no roles, no @everyone"
    card_id = card(discord_standin, sweep_id)["id"]
    edits = [r.at for r in discord_standin.rest("PATCH", f"/messages/{card_id}")]
    assert edits and all(b - a >= 2.9 for a, b in itertools.pairwise(edits)), "one edit every 3 s at most"
    thread = view.sweep.thread_id
    assert thread is not None, "the card has a thread for its trials"
    reports = [
        m for m in discord_standin.in_thread(str(thread)) if m["embeds"] and "Experiment j" in m["embeds"][0]["title"]
    ]
    assert sorted(m["embeds"][0]["title"].split()[2] for m in reports) == sorted(t.job_id for t in trials), (
        "each trial's end report once, in the sweep's thread"
    )


async def test_a_4_cell_grid_with_parallel_2_never_runs_more_than_2_and_ends_after_4(
    start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn, out: Path
) -> None:
    async with start_adjutant(sweep_env()) as bot:
        grid = (
            '{"method": "grid", "metric": {"name": "loss"}, "parameters": {"x": {"values": [0.1, 0.2, 0.4, 0.5]},'
            ' "steps": {"value": 3}, "step_seconds": {"value": 0.7}}}'
        )
        sweep_id = await start_search(discord_standin, f"--parallel 2 ```json\n{grid}\n```")
        await wait_ended(discord_standin, sweep_id)
        await loop_turns(bot, 3)  # nothing more comes
        view = await sweep_view(bot, sweep_id)
        ran = records(out)
    assert view.sweep.method == "grid" and len(view.trials) == 4 and len(ran) == 4
    assert sorted(t.params["x"] for t in view.trials) == [0.1, 0.2, 0.4, 0.5]
    assert most_at_once(ran) <= 2, "never more than --parallel trials at once"
    assert most_at_once(ran) == 2, "and the slots were used"
    assert card_state(discord_standin, sweep_id) == "finished"


@pytest.mark.slow
@pytest.mark.timeout(400)
async def test_bayes_on_a_quadratic_gets_closer_to_its_minimum(
    start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn, out: Path
) -> None:
    config = yaml_block(
        """
method: bayes
metric: {name: loss, goal: minimize}
run_cap: 12
parameters:
  x: {distribution: uniform, min: -2.0, max: 2.0}
"""
    )
    async with start_adjutant(sweep_env()) as bot:
        sweep_id = await start_search(discord_standin, f"--parallel 2 --seed 3 {config}")
        await wait_ended(discord_standin, sweep_id, timeout=180)
        view = await sweep_view(bot, sweep_id)
    trials = sorted(view.trials, key=lambda t: t.number)
    assert len(trials) == 12
    distance = [abs(t.params["x"] - 0.3) for t in trials]
    assert statistics.median(distance[6:]) < statistics.median(distance[:6]), distance


@pytest.mark.timeout(300)  # about 50 s: see below
async def test_hyperband_stops_a_trial_that_is_bad_at_the_first_rung(
    start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn, out: Path
) -> None:
    config = yaml_block(
        """
method: grid
metric: {name: loss, goal: minimize}
early_terminate: {type: hyperband, min_iter: 3, eta: 3}
parameters:
  x: {values: [0.3, 4.0]}
  steps: {value: 12}
  step_seconds: {value: 2.5}
"""
    )
    # wandb-core sends a run's history every 15 s here (x_file_stream_transmit_interval is not honoured), so the
    # trials log a step every 2.5 s: W&B first sees them between the first rung (step 3) and the second (step 9).
    async with start_adjutant(sweep_env()) as bot:
        sweep_id = await start_search(discord_standin, f"--parallel 2 {config}")
        await wait_ended(discord_standin, sweep_id, timeout=120)
        view = await sweep_view(bot, sweep_id)
    by_x = {t.params["x"]: t for t in view.trials}
    assert by_x[4.0].state == "stopped" and by_x[4.0].rung == 0, by_x[4.0]
    assert by_x[0.3].state == "done"
    text = card(discord_standin, sweep_id)["embeds"][0]
    assert "stopped early (hyperband, rung 0)" in json.dumps(text, ensure_ascii=False)


async def test_a_target_reached_by_trial_3_queues_nothing_more(
    start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn, out: Path
) -> None:
    config = yaml_block(
        """
method: grid
metric: {name: loss, goal: minimize, target: 0.001}
parameters:
  x: {values: [1.3, 0.9, 0.3, 0.31, 0.5, 0.7]}
"""
    )
    async with start_adjutant(sweep_env()) as bot:
        sweep_id = await start_search(discord_standin, f"--parallel 1 {config}")
        await wait_ended(discord_standin, sweep_id)
        await loop_turns(bot, 3)  # nothing more comes
        view = await sweep_view(bot, sweep_id)
        ran = records(out)
        jobs = [j for j in await bot.get_cog("Experiments").scheduler.recent(50) if j.sweep_id == sweep_id]
    assert [t.number for t in view.trials if t.state == "done"] == [1, 2, 3]
    assert len(view.trials) == 3, f"no trial recorded after the target: {[(t.number, t.state) for t in view.trials]}"
    assert len(jobs) == 3, "no job queued after the target"
    assert len(ran) == 3, "nothing ran after the target"
    assert card_state(discord_standin, sweep_id) == "finished"


async def test_pause_resume_stop_from_the_card_and_a_refusal_for_a_member_without_rights(
    start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn, out: Path
) -> None:
    from tests.cogs.test_alert_cards import answer_to

    grid = '{"x": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], "steps": [6], "step_seconds": [0.5]}'
    async with start_adjutant(sweep_env()) as bot:
        sweep_id = await start_search(discord_standin, f"--parallel 1 {grid}")
        message = card(discord_standin, sweep_id)

        def button(action: str) -> str:
            return f"adjutant:sweep:{action}:{sweep_id}"

        assert discord_standin.buttons(message) == [button("pause"), button("resume"), button("stop")]
        refused = await answer_to(discord_standin, message, button("pause"), "member")
        assert refused["flags"] & 64 and "not allowed to pause sweeps" in refused["content"]
        assert card_state(discord_standin, sweep_id) == "running"
        await eventually(lambda: len(records(out)) >= 1, timeout=30)
        paused = await answer_to(discord_standin, message, button("pause"), "admin")
        assert f"Sweep `{sweep_id}` paused" in paused["content"] and not paused.get("flags", 0) & 64
        await eventually(lambda: card_state(discord_standin, sweep_id) == "paused", timeout=15)
        await eventually(lambda: all("end" in r for r in records(out)), timeout=30)
        started = len(records(out))
        proposed = len((await sweep_view(bot, sweep_id)).trials)
        await loop_turns(bot, 3)
        assert len(records(out)) == started, "no new trial while paused"
        assert len((await sweep_view(bot, sweep_id)).trials) == proposed, "none proposed while paused"
        resumed = await answer_to(discord_standin, card(discord_standin, sweep_id), button("resume"), "admin")
        assert "resumed" in resumed["content"]
        await eventually(lambda: len(records(out)) > started, timeout=30)
        stopped = await answer_to(discord_standin, card(discord_standin, sweep_id), button("stop"), "admin")
        assert "stopped" in stopped["content"]
        await wait_ended(discord_standin, sweep_id, timeout=30)
        await eventually(lambda: bool(ended_messages(discord_standin, sweep_id)), timeout=15)
        view = await sweep_view(bot, sweep_id)
        entries = bot.get_cog("Experiments").services.approvals.entries(20)
    assert view.sweep.state == "stopped" and len(view.trials) < 6
    assert card_state(discord_standin, sweep_id) == "stopped"
    assert not discord_standin.buttons(card(discord_standin, sweep_id)), "an ended sweep's card has no buttons"
    assert len(ended_messages(discord_standin, sweep_id)) == 1
    decided = [(e.action, e.detail) for e in entries if e.target == sweep_id]
    assert ("sweep decided", "stop") in decided and ("sweep decided", "pause") in decided
    assert any(e.action == "refused" and e.actor == "member" for e in entries)


async def test_results_gives_the_card_and_a_csv_best_first_and_sweeps_lists_it(
    start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn, out: Path
) -> None:
    async with start_adjutant(sweep_env()) as bot:
        config = '{"method": "grid", "metric": {"name": "loss"}, "parameters": {"x": {"values": [0.9, 0.3, 0.5]}}}'
        sweep_id = await start_search(discord_standin, f"--parallel 3 {config}")
        await wait_ended(discord_standin, sweep_id)
        view = await sweep_view(bot, sweep_id)
        count = len(discord_standin.sent())
        await discord_standin.post(f"$results {sweep_id}")
        answer = await discord_standin.wait_for_message(lambda m: bool(m["attachments"]), after=count, timeout=15)
        await discord_standin.post("$sweeps")
        listing = await discord_standin.wait_for_message(
            lambda m: bool(m["embeds"]) and m["embeds"][0].get("title", "").startswith("Sweeps"), after=count
        )
        await discord_standin.post("$results sweep-nothing")
        missing = await discord_standin.wait_for_message(lambda m: "No sweep" in (m["content"] or ""), after=count)
    upload = next(r for r in discord_standin.rest("POST", "/messages") if f"{sweep_id}.csv" in r.files)
    rows = upload.files[f"{sweep_id}.csv"].decode().splitlines()
    assert rows[0].startswith("trial,state,loss,runtime_s,job,wandb_run")
    assert [json.loads(r.split(",")[-1]) for r in rows[1:]] == [0.3, 0.5, 0.9], "best first"
    assert {a["filename"] for a in answer["attachments"]} >= {f"{sweep_id}.csv", "sweep.png"}
    assert f"`{sweep_id}` · grid · finished · 3/3 done · best loss 0" in listing["embeds"][0]["description"]
    assert "`sweep-nothing`" in missing["content"]
    assert len(view.trials) == 3
