"""The run desk end to end: long answers paged with buttons only the asker may press, $compare, the status card.
Real discord.py against the Discord stand-in; the real wandb client against the W&B stand-in."""

from __future__ import annotations

import asyncio

from adjutant.jobs import JobRequest
from tests.cogs.conftest import WANDB_ENV, reporting_ready
from tests.cogs.test_alert_cards import answer_to
from tests.conftest import eventually
from tests.standins.discord_standin import DiscordStandIn
from tests.standins.wandb_standin import WandbStandIn


async def say(discord: DiscordStandIn, text: str, author: str = "admin") -> dict:
    """Post a command; its text answer."""
    count = len(discord.sent())
    await discord.post(text, author=author)
    return await discord.wait_for_message(lambda m: bool(m["content"]), after=count, timeout=20)


async def ask(discord: DiscordStandIn, text: str, author: str = "admin") -> dict:
    count = len(discord.sent())
    await discord.post(text, author=author)
    return await discord.wait_for_message(lambda m: bool(m["embeds"] or m["content"]), after=count, timeout=20)


async def test_long_answers_are_paged_and_only_the_asker_turns_pages(
    start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn
) -> None:
    for i in range(25):
        wandb_standin.create_run(f"r{i:02d}", display_name=f"run-{i:02d}", state="finished", summary={"loss": i / 10})
    async with start_adjutant(WANDB_ENV) as bot:
        await reporting_ready(bot)
        answer = await ask(discord_standin, "$runs 25")
        first = answer["embeds"][0]
        assert first["footer"]["text"] == "page 1 of 3"
        rows = first["description"].strip("`\n").splitlines()
        assert rows[0].startswith("state") and len(rows) == 11, "the header and 10 runs"
        assert discord_standin.buttons(answer), "◀ ▶"
        next_id = discord_standin.buttons(answer)[1]
        refused = await answer_to(discord_standin, answer, next_id, "member")
        assert refused["flags"] & 64 and "Only the member who asked can turn these pages" in refused["content"]
        assert answer["embeds"][0]["footer"]["text"] == "page 1 of 3"
        turned = await answer_to(discord_standin, answer, next_id, "admin")
        assert turned["embeds"][0]["footer"]["text"] == "page 2 of 3"
        shown = set()
        for page in (first, turned["embeds"][0]):
            shown |= {line.split()[1] for line in page["description"].strip("`\n").splitlines()[1:]}
        assert len(shown) == 20, "no run on two pages"
        turned = await answer_to(discord_standin, answer, next_id, "admin")
        last = turned["embeds"][0]["description"].strip("`\n").splitlines()
        assert turned["embeds"][0]["footer"]["text"] == "page 3 of 3" and len(last) == 6
        assert "run-00" in turned["embeds"][0]["description"], "the oldest run is on the last page, not cut"
        small = await ask(discord_standin, "$runs 5")
        assert "footer" not in small["embeds"][0] and not discord_standin.buttons(small)


async def test_compare_shows_exactly_the_differing_keys_the_deltas_and_a_chart(
    start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn
) -> None:
    from tests.cogs.test_plots import not_blank, png_of

    base = {"optimizer": {"name": "adam", "lr": 0.001, "betas": [0.9, 0.999]}, "epochs": 10, "data": {"version": "v2"}}
    other = {**base, "optimizer": {**base["optimizer"], "lr": 0.01}, "data": {"version": "v3"}}  # two nested keys
    wandb_standin.create_run("cmpa", display_name="alpha", state="finished", config=base)
    wandb_standin.create_run("cmpb", display_name="beta", state="finished", config=other)
    wandb_standin.log("cmpa", [{"loss": 1.0 - i / 10, "acc": 0.5 + i / 100} for i in range(8)])
    wandb_standin.log("cmpb", [{"loss": 1.0 - i / 20, "acc": 0.5 + i / 50} for i in range(8)])
    async with start_adjutant(WANDB_ENV) as bot:
        await reporting_ready(bot)
        wandb_standin.reset_counts()
        answer = await ask(discord_standin, "$compare alpha cmpb")
        # each run is looked up once: the chart reuses what $compare found (it looked them up again before: 5 Run)
        assert wandb_standin.counts["Run"] == 3 and wandb_standin.counts["RunSampledHistory"] == 2, wandb_standin.counts
        embed = answer["embeds"][0]
        fields = {f["name"]: f["value"] for f in embed["fields"]}
        differing = fields["Config that differs (2 key(s); 3 equal in all)"]
        rows = differing.strip("`\n").splitlines()
        assert [row.split()[0] for row in rows] == ["key", "data.version", "optimizer.lr"]
        assert rows[1].split()[1:] == ["v2", "v3"] and rows[2].split()[1:] == ["0.001", "0.01"]
        metrics = fields["Summary metrics (deltas against A)"].strip("`\n").splitlines()
        loss = next(row for row in metrics if row.startswith("loss"))
        assert loss.split() == ["loss", "0.3", "0.65", "(+0.35)"]
        acc = next(row for row in metrics if row.startswith("acc"))
        assert acc.split() == ["acc", "0.57", "0.64", "(+0.07)"]
        assert metrics[1].startswith("loss"), "the ranking metric first"
        assert fields["Runs"].startswith("**A** [alpha](") and "(`cmpb`) · finished" in fields["Runs"]
        assert embed["image"]["url"] == "attachment://compare.png"
        image = png_of(discord_standin, "compare.png")
        assert image.format == "PNG" and not_blank(image)

        acc_chart = await ask(discord_standin, "$compare alpha beta metric:acc")
        assert acc_chart["embeds"][0]["footer"]["text"] == "chart: acc"
        jobs = bot.get_cog("Desk").services.jobs
        request = JobRequest({"optimizer": "adam"}, "/bin/true", 1, "admin", None, None)
        job = await asyncio.to_thread(jobs.add, request, jobs.path.parent / "logs")
        await asyncio.to_thread(jobs.update, job.id, wandb_run_id="cmpa")
        by_job = await ask(discord_standin, f"$compare {job.id} beta")
        assert by_job["embeds"][0]["fields"][0]["value"].startswith("**A** [alpha](")
        one = await ask(discord_standin, "$compare alpha")
        assert "Give 2 to 5 runs" in one["content"]
        missing = await ask(discord_standin, "$compare alpha gamma")
        assert missing["content"].startswith("No run `gamma` in team/proj.")


async def test_the_status_card_is_edited_never_reposted_across_a_wandb_outage(
    start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn
) -> None:
    """The edit rule (at most one edit a minute; timestamps alone every ten) runs on the test's clock: each step moves
    it on and refreshes the cards at once instead of waiting for the loop and a real minute."""
    import time

    from adjutant.status import EDIT_SECONDS, STAMP_REFRESH_SECONDS

    clock = [time.time()]
    env = {**WANDB_ENV, "ADJUTANT_WANDB_TIMEOUT": "2"}  # W&B's client gives up on an unanswered poll in 2 s, not 20
    wandb_standin.create_run("s1", display_name="steady", state="running")
    async with start_adjutant(env) as bot:
        await reporting_ready(bot)
        desk = bot.get_cog("Desk")
        desk.cards.clock = lambda: clock[0]
        health = desk.services.watchers["team/proj"].health
        answer = await say(discord_standin, "$status pin")
        assert "Status card posted and pinned" in answer["content"]
        card = next(m for m in discord_standin.sent() if m["embeds"] and "Adjutant:" in m["embeds"][0]["title"])
        channel = card["channel_id"]
        assert discord_standin.pins[channel] == [int(card["id"])]
        assert card["embeds"][0]["title"] == "🟢 Adjutant: all good"
        assert "**W&B team/proj** · last success <t:" in card["embeds"][0]["description"]
        count = len(discord_standin.sent())

        wandb_standin.fail(10_000, status=503)  # W&B down
        await eventually(lambda: health.failures >= 1, timeout=20)
        await desk.cards.refresh()
        assert card["embeds"][0]["title"] == "🟢 Adjutant: all good", "less than a minute since the last edit"
        clock[0] += EDIT_SECONDS + 1
        await desk.cards.refresh()
        assert card["embeds"][0]["title"] == "🔴 Adjutant: W&B team/proj not answering"
        assert "\n  `WandbApi" in card["embeds"][0]["description"], "the error, as W&B's client said it"
        with wandb_standin.lock:
            wandb_standin.faults.clear()  # W&B back
        await eventually(lambda: health.failures == 0, timeout=30)
        clock[0] += EDIT_SECONDS + 1
        await desk.cards.refresh()
        assert card["embeds"][0]["title"] == "🟢 Adjutant: all good"
        again = await say(discord_standin, "$status pin")
        assert "already there" in again["content"]
    cards = [m for m in discord_standin.sent() if m["embeds"] and "Adjutant:" in m["embeds"][0].get("title", "")]
    assert [m["id"] for m in cards] == [card["id"]], "one card, edited in place"
    assert len(discord_standin.versions[int(card["id"])]) >= 2, "edited (red, then green)"
    assert len(discord_standin.sent()) == count + 1, "nothing posted but the answer to the second $status pin"

    async with start_adjutant(env) as bot:  # a restart edits the same card
        await reporting_ready(bot)
        desk = bot.get_cog("Desk")
        desk.cards.clock = lambda: clock[0]
        edits = len(discord_standin.versions[int(card["id"])])
        discord_standin.deny_pins = True
        clock[0] += STAMP_REFRESH_SECONDS + 1  # nothing but newer timestamps to show: edited after ten minutes
        await desk.cards.refresh()
        assert "Adjutant:" in card["embeds"][0]["title"] and len(discord_standin.versions[int(card["id"])]) == edits + 1
    cards = [m for m in discord_standin.sent() if m["embeds"] and "Adjutant:" in m["embeds"][0].get("title", "")]
    assert len(cards) == 1


async def test_a_status_card_that_cannot_be_pinned_says_so(
    start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn
) -> None:
    discord_standin.deny_pins = True
    async with start_adjutant(WANDB_ENV) as bot:
        await reporting_ready(bot)
        answer = await say(discord_standin, "$status pin", author="admin")
        assert "I could not pin it (I need the Pin Messages or Manage Messages permission here)" in answer["content"]
        refused = await say(discord_standin, "$status pin", author="member")
        assert "not allowed to pin the status card" in refused["content"]


def digests(discord: DiscordStandIn) -> list[dict]:
    return [m for m in discord.sent() if m["embeds"] and m["embeds"][0].get("title", "").startswith("📰 Digest")]


async def test_a_due_digest_is_posted_once_with_its_chart_and_never_again_after_a_restart(
    start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn
) -> None:
    """Time is driven through the watcher's clock, not waited for: the schedule's moment is two minutes ahead in real
    time, the test's clock is past it (the timing rules themselves, due while the bot was down, late, once across
    restarts, only the project's own jobs: tests/test_digest.py). The deliver loop posts it with its chart, once."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    from adjutant.digest import moments, parse_schedule
    from adjutant.jobs import JobRequest, JobState, JobStore, iso
    from tests.cogs.test_plots import png_of

    now = dt.datetime.now(dt.UTC)
    schedule = parse_schedule(f"daily {now + dt.timedelta(minutes=2):%H:%M}")
    moment = moments(schedule, ZoneInfo("UTC"), now, now + dt.timedelta(days=1))[0]
    later = moment + dt.timedelta(minutes=11)  # more than LATE_AFTER after the moment: posted late, and says so
    wandb_standin.create_run(
        "old",
        display_name="old-best",
        state="finished",
        summary={"loss": 0.5},
        created_at=wandb_standin.now() - dt.timedelta(days=3),
    )
    wandb_standin.create_run("d1", display_name="good", state="finished", summary={"loss": 0.3})
    wandb_standin.create_run("d2", display_name="better", state="finished", summary={"loss": 0.2})
    wandb_standin.create_run("d3", display_name="broken", state="crashed", summary={"loss": 0.01})
    env = {**WANDB_ENV, "ADJUTANT_DIGEST": schedule.describe()}

    def record_use(path) -> None:  # alice's job in this project: 2 GPUs for 1.5 h, ended a minute ago
        jobs = JobStore(path)
        request = JobRequest({}, "/bin/true", 42, "alice", None, None, project="proj", entity="team", gpus=2)
        job = jobs.add(request, path.parent / "logs")
        end = now - dt.timedelta(minutes=1)
        started = iso(end - dt.timedelta(hours=1.5))
        jobs.update(job.id, state=JobState.SUCCEEDED, started_at=started, ended_at=iso(end), reported=1, acked=1)
        jobs.close()

    async with start_adjutant(env) as bot:
        await reporting_ready(bot)
        services = bot.get_cog("Desk").services
        await asyncio.to_thread(record_use, services.jobs.path)
        watcher = services.watchers["team/proj"]
        assert await watcher.make_digests(schedule, ZoneInfo("UTC"), metric="loss", goal="min") == 0, "not yet"
        watcher.clock = lambda: later
        assert await watcher.make_digests(schedule, ZoneInfo("UTC"), metric="loss", goal="min") == 1
        await eventually(lambda: bool(digests(discord_standin)), timeout=20)
        digest = digests(discord_standin)[0]
        embed = digest["embeds"][0]
        fields = {f["name"]: f["value"] for f in embed["fields"]}
        assert embed["title"] == "📰 Digest of team/proj (late)"
        assert fields["Runs"] == "3: 2 finished, 1 crashed"
        assert fields["🏆 New best run"] == "better (`d2`): loss 0.2, better by 0.3 than old-best"
        assert fields["💥 Crashed or failed"] == "broken (crashed)"
        assert fields["Jobs by member"].startswith("**alice** · 1 job(s) · 3.0 GPU-h")
        assert embed["image"]["url"] == "attachment://digest.png"
        assert png_of(discord_standin, "digest.png").format == "PNG"
    async with start_adjutant(env) as bot:  # restarted right after posting: not again
        await reporting_ready(bot)
        watcher = bot.get_cog("Desk").services.watchers["team/proj"]
        watcher.clock = lambda: later + dt.timedelta(minutes=1)
        assert await watcher.make_digests(schedule, ZoneInfo("UTC"), metric="loss", goal="min") == 0
        await asyncio.sleep(2)
    assert len(digests(discord_standin)) == 1


def modal_of(discord: DiscordStandIn, interaction_id: str) -> dict:
    response = next(r for r in discord.interaction_responses if r["interaction_id"] == interaction_id)
    assert response["type"] == 9, response
    return response["data"]


async def opened(discord: DiscordStandIn, interaction_id: str) -> dict:
    await eventually(lambda: any(r["interaction_id"] == interaction_id for r in discord.interaction_responses))
    return modal_of(discord, interaction_id)


def inputs(modal: dict) -> dict[str, dict]:
    """label → the text input (custom id, prefilled value)."""
    return {c["label"]: c for row in modal["components"] for c in row["components"]}


async def test_launch_forms(start_adjutant, discord_standin: DiscordStandIn, out_dir) -> None:
    from adjutant.hparams import to_argument
    from tests.cogs.test_experiments import acks, job_id_of, launch, launch_env, received, wait_report

    source = {"lr": 0.01, "epochs": 2, "optimizer": {"name": "adam"}, "sleep": 0}
    async with start_adjutant(launch_env()):
        first = await launch(discord_standin, to_argument(source))
        report = await wait_report(discord_standin, first)
        assert discord_standin.buttons(report) == [f"adjutant:edit:job:{first}"]

        refused = await answer_to(discord_standin, report, f"adjutant:edit:job:{first}", "member")
        assert refused["flags"] & 64 and "not allowed to launch" in refused["content"]

        modal = await opened(discord_standin, await discord_standin.click(report, f"adjutant:edit:job:{first}"))
        assert modal["title"] == f"Rerun job {first} with edits"
        fields = inputs(modal)
        assert list(fields) == ["lr", "epochs", "sleep", "All hyperparameters (JSON)"]
        assert fields["lr"]["value"] == "0.01" and fields["epochs"]["value"] == "2"
        assert json_of(fields["All hyperparameters (JSON)"]["value"]) == source

        # one field changed: the new job's JSON differs from the source only there
        count = len(acks(discord_standin))
        await discord_standin.submit_modal(modal, {fields["lr"]["custom_id"]: "0.02"})
        await eventually(lambda: len(acks(discord_standin)) > count, timeout=10)
        ack = acks(discord_standin)[count]
        second = job_id_of(ack)
        assert ack["content"] == f"From job `{first}`:\n```diff\n~ lr: 0.01 → 0.02\n```", "the diff against the source"
        await eventually(lambda: (out_dir / f"{second}.json").exists(), timeout=15)
        assert received(out_dir, second)["argv"] == [to_argument({**source, "lr": 0.02})]

        # an invalid value launches nothing and keeps what was typed
        before = len(acks(discord_standin))

        async def open_again() -> dict:  # each submit comes from a form opened for it (Discord's rule)
            return await opened(discord_standin, await discord_standin.click(report, f"adjutant:edit:job:{first}"))

        bad = await discord_standin.submit_modal(await open_again(), {fields["epochs"]["custom_id"]: "ten"})
        await eventually(lambda: any(r["interaction_id"] == bad for r in discord_standin.interaction_responses))
        answer = next(r for r in discord_standin.interaction_responses if r["interaction_id"] == bad)["data"]
        assert answer["flags"] & 64
        assert "Not launched: the field epochs holds 'ten', which is not a number" in answer["content"]
        assert "epochs: ten" in answer["content"]
        await asyncio.sleep(1)
        assert len(acks(discord_standin)) == before
        ephemeral = next(m for m in discord_standin.responses(bad))
        again_id = discord_standin.buttons(ephemeral)[0]
        reopened = await opened(discord_standin, await discord_standin.click(ephemeral, again_id))
        assert inputs(reopened)["epochs"]["value"] == "ten", "the form comes back as it was typed"
        broken_json = await discord_standin.submit_modal(
            await open_again(), {fields["All hyperparameters (JSON)"]["custom_id"]: '{"lr": 0.01,}'}
        )
        await eventually(lambda: any(r["interaction_id"] == broken_json for r in discord_standin.interaction_responses))
        answer = next(r for r in discord_standin.interaction_responses if r["interaction_id"] == broken_json)["data"]
        assert "Not launched: invalid JSON at line 1, column 13" in answer["content"]
        assert len(acks(discord_standin)) == before

        # right-click → Apps → Rerun on the end report; /experiment alone
        menu = await opened(discord_standin, await discord_standin.message_command("Rerun", report))
        assert menu["title"] == f"Rerun job {first} with edits"
        fresh = await opened(discord_standin, await discord_standin.slash("experiment"))
        assert fresh["title"] == "Launch an experiment"
        assert json_of(inputs(fresh)["All hyperparameters (JSON)"]["value"])["lr"] == 0.02, "the member's last job"


def json_of(text: str) -> dict:
    import json

    return json.loads(text)


async def test_a_form_launch_follows_the_approval_rule(
    start_adjutant, discord_standin: DiscordStandIn, out_dir
) -> None:
    from tests.cogs.test_experiments import launch_env, wait_report

    env = launch_env(ADJUTANT_GPUS="0,1", ADJUTANT_APPROVAL_GPUS="1")
    async with start_adjutant(env) as bot:
        count = len(discord_standin.sent())
        await discord_standin.post('$experiment --gpus 2 {"sleep": 0}')
        card = await discord_standin.wait_for_message(lambda m: bool(m["embeds"]), after=count, timeout=10)
        await answer_to(discord_standin, card, "adjutant:approval:approve:1", "manager")
        jobs = bot.get_cog("Experiments").services.jobs
        await eventually(lambda: bool(jobs.recent(1)), timeout=10)
        job_id = jobs.recent(1)[0].id
        report = await wait_report(discord_standin, job_id, timeout=30)
        modal = await opened(discord_standin, await discord_standin.click(report, f"adjutant:edit:job:{job_id}"))
        submitted = await discord_standin.submit_modal(modal, {})
        await eventually(lambda: bool(discord_standin.responses(submitted)), timeout=10)
        answer = discord_standin.responses(submitted)[0]
        assert answer["content"].startswith("Request #2 waits for an approver")
        assert answer["embeds"][0]["title"] == "🛂 Approval needed: experiment request #2"
        assert discord_standin.buttons(answer) == [
            "adjutant:approval:approve:2",
            "adjutant:approval:reject:2",
            "adjutant:approval:withdraw:2",
        ]
        assert len(jobs.recent(10)) == 1, "nothing queued before the approval"


async def test_a_run_cards_rerun_with_edits_opens_a_form_from_its_config(
    start_adjutant, discord_standin: DiscordStandIn, wandb_standin: WandbStandIn, out_dir, monkeypatch
) -> None:
    from tests.cogs.test_experiments import launch_env

    monkeypatch.delenv("WANDB_SERVICE")  # out_dir's fake one would capture this process's wandb client

    wandb_standin.create_run("rc1", display_name="card-run", state="finished", config={"lr": 0.1, "layers": 4})
    async with start_adjutant({**WANDB_ENV, **launch_env()}) as bot:
        await reporting_ready(bot)
        card = await ask(discord_standin, "$run rc1")
        assert card["embeds"][0]["title"] == "card-run"
        assert discord_standin.buttons(card) == ["adjutant:edit:run:rc1"]
        modal = await opened(discord_standin, await discord_standin.click(card, "adjutant:edit:run:rc1"))
        assert modal["title"] == "Rerun W&B run rc1 with edits"
        assert json_of(inputs(modal)["All hyperparameters (JSON)"]["value"]) == {"lr": 0.1, "layers": 4}
