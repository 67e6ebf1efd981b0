"""The launching cog end to end: real discord.py ↔ Discord stand-in; real supervisor and script processes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sqlite3
from pathlib import Path

import pytest

from adjutant.hparams import to_argument
from tests.cogs.conftest import TOKEN
from tests.conftest import eventually, start_standalone, subprocess_env
from tests.standins.discord_standin import DiscordStandIn

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "experiment.py"


def launch_env(**extra: str) -> dict[str, str]:
    return {"ADJUTANT_EXPERIMENT_SCRIPT": str(SCRIPT), "ADJUTANT_CANCEL_GRACE_SECONDS": "1", **extra}


ACK_TITLE = re.compile(r"^\S+ Experiment j[a-z0-9]{6}: ")  # "🧪 Experiment j…: starting now", then its final state


def acks(discord: DiscordStandIn) -> list[dict]:
    """Acknowledgements of launches, as they are now (edited to their final state once the job ended)."""
    return [m for m in discord.sent() if m["embeds"] and ACK_TITLE.match(m["embeds"][0].get("title", ""))]


def job_id_of(ack: dict) -> str:
    return ack["embeds"][0]["title"].split()[2].rstrip(":")


async def launch(discord: DiscordStandIn, params: str, author: str = "admin") -> str:
    before = len(acks(discord))
    await discord.post(f"$experiment {params}", author=author)
    await eventually(lambda: len(acks(discord)) > before, timeout=10)
    return job_id_of(acks(discord)[before])


def report(discord: DiscordStandIn, job_id: str) -> list[dict]:
    return [
        m
        for m in discord.sent()
        if m["embeds"]
        and f"Experiment {job_id} " in m["embeds"][0]["title"]
        and not m["embeds"][0]["title"].startswith("🧪")
    ]


async def wait_report(discord: DiscordStandIn, job_id: str, timeout: float = 30) -> dict:
    await eventually(lambda: bool(report(discord, job_id)), timeout=timeout)
    return report(discord, job_id)[0]


def fields(message: dict) -> dict[str, str]:
    return {f["name"]: f["value"] for f in message["embeds"][0].get("fields", [])}


def received(out_dir: Path, job_id: str) -> dict:
    return json.loads((out_dir / f"{job_id}.json").read_text())


def pid_alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


async def test_launch_runs_script_with_exact_json(
    start_adjutant, discord_standin: DiscordStandIn, out_dir: Path
) -> None:
    params = {
        "name": 'it\'s a "test"; $(touch /tmp/pwned) `uname` && echo $HOME | cat',
        "lr": 0.001,
        "epochs": 2,
        "nested": {"a": [1, 2, {"b": None}]},
        "unicode": "αβγ ✓",
    }
    async with start_adjutant(launch_env()) as bot:
        job_id = await launch(discord_standin, json.dumps(params))
        ack = acks(discord_standin)[0]
        assert discord_standin.buttons(ack) == [f"adjutant:cancel:{job_id}"]
        ack_fields = fields(ack)
        assert ack_fields["Launched by"] == "admin"
        shown = json.loads(ack_fields["Hyperparameters"].removeprefix("```json\n").removesuffix("\n```"))
        assert shown == {**params, "name": params["name"].replace("`", "\u02cb")}, "backticks cannot break the block"
        done = await wait_report(discord_standin, job_id)
        cog = bot.get_cog("Experiments")
        for _ in range(200):  # the report is marked sent right after Discord accepted it (and the ack was edited)
            job = await asyncio.to_thread(cog.services.jobs.get, job_id)
            if job.reported:
                break
            await asyncio.sleep(0.05)
    assert done["embeds"][0]["title"] == f"✅ Experiment {job_id} succeeded"
    assert fields(done)["Exit code"] == "0"
    assert done["channel_id"] == ack["id"], "the report is in the job's thread (started from the acknowledgement)"
    got = received(out_dir, job_id)
    assert got["argv"] == [to_argument(params)], "one argument, byte for byte"
    assert bytes.fromhex(got["argv_hex"]) == to_argument(params).encode()
    assert json.loads(got["argv"][0]) == params
    assert not Path("/tmp/pwned").exists()
    env = got["env"]
    assert "DISCORD_TOKEN" not in env and TOKEN not in env.values()
    assert "WANDB_SERVICE" not in env
    assert env["ADJUTANT_JOB_ID"] == job_id
    assert env["WANDB_RUN_ID"] == job.wandb_run_id
    assert got["cwd"] == str(SCRIPT.parent)
    assert job.state == "succeeded" and job.exit_code == 0 and job.reported


async def test_key_value_and_fenced_input(start_adjutant, discord_standin, out_dir) -> None:
    async with start_adjutant(launch_env()):
        first = await launch(discord_standin, 'lr=0.001 epochs=10 name="my run" flag=true')
        second = await launch(discord_standin, '```json\n{"epochs": 1}\n```')
        await wait_report(discord_standin, first)
        await wait_report(discord_standin, second)
    assert json.loads(received(out_dir, first)["argv"][0]) == {
        "lr": 0.001,
        "epochs": 10,
        "name": "my run",
        "flag": True,
    }
    assert json.loads(received(out_dir, second)["argv"][0]) == {"epochs": 1}


@pytest.mark.parametrize("author", ["member", "manager", "teammate"])
async def test_unauthorized_members_are_refused(start_adjutant, discord_standin, out_dir, author, caplog) -> None:
    env = launch_env()
    async with start_adjutant(env) as bot:
        await discord_standin.post('$experiment {"epochs": 1}', author=author)
        reply = await discord_standin.wait_for_message(timeout=10)
        await asyncio.sleep(0.5)
        jobs = await asyncio.to_thread(bot.get_cog("Experiments").services.jobs.recent, 10)
    if author == "manager":  # Manage Server may launch by default
        assert reply["embeds"] and discord_standin.first_version(reply)["embeds"][0]["title"].startswith("🧪")
        return
    assert "not allowed to launch" in reply["content"]
    assert jobs == []
    assert list(out_dir.iterdir()) == []
    assert f"refused launch by {author}" in caplog.text


async def test_team_role_and_user_list(start_adjutant, discord_standin, out_dir) -> None:
    member_id = discord_standin.member("member").id
    async with start_adjutant(launch_env(ADJUTANT_LAUNCH_ROLES="ml-team", ADJUTANT_LAUNCH_USERS=str(member_id))):
        await launch(discord_standin, '{"epochs": 1}', author="teammate")
        await launch(discord_standin, '{"epochs": 1}', author="member")
        await discord_standin.post('$experiment {"epochs": 1}', author="admin")  # not in the lists any more
        reply = await discord_standin.wait_for_message(lambda m: "not allowed" in m["content"], timeout=10)
    assert "ml-team" in reply["content"]


BAD_INPUTS = [
    ('{"epochs": 10,}', "invalid JSON at line 1, column 15"),
    ('{"a": 1,\n "b": }', "invalid JSON at line 2, column 7"),
    ("[1, 2, 3]", "must be a JSON object"),
    ("42", "must be a JSON object"),
    ('"just a string"', "must be a JSON object"),
    ('{"lr": NaN}', "NaN is not allowed"),
    ('{"lr": 1, "lr": 2}', "appears twice"),
    ('{"a": ' * 20 + "1" + "}" * 20, "nested too deeply"),
    ('{"x": "' + "y" * 5000 + '"}', "too large"),
    ("epochs", "is not key=value"),
    ("", "no hyperparameters given"),
    ('lr="unclosed', "cannot split"),
]


async def test_bad_input_is_refused_clearly(start_adjutant, discord_standin, out_dir) -> None:
    async with start_adjutant(launch_env()) as bot:
        for text, expected in BAD_INPUTS:
            count = len(discord_standin.sent())
            await discord_standin.post(f"$experiment {text}")
            reply = await discord_standin.wait_for_message(after=count, timeout=10)
            assert reply["content"].startswith("Not launched:"), (text, reply["content"])
            assert expected in reply["content"], (text, reply["content"])
            assert "Traceback" not in reply["content"]
        jobs = await asyncio.to_thread(bot.get_cog("Experiments").services.jobs.recent, 10)
    assert jobs == []
    assert list(out_dir.iterdir()) == []


async def test_schema_validation(start_adjutant, discord_standin, out_dir, tmp_path) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text(
        json.dumps(
            {
                "type": "object",
                "properties": {"epochs": {"type": "integer", "default": 3}, "lr": {"type": "number", "default": 0.01}},
                "additionalProperties": False,
            }
        )
    )
    async with start_adjutant(launch_env(ADJUTANT_HPARAMS_SCHEMA=str(schema))):
        await discord_standin.post('$experiment {"epochs": "ten"}')
        wrong = await discord_standin.wait_for_message(timeout=10)
        count = len(discord_standin.sent())
        await discord_standin.post('$experiment {"epoch": 1}')
        unknown = await discord_standin.wait_for_message(after=count, timeout=10)
        job_id = await launch(discord_standin, '{"epochs": 1}')
        await wait_report(discord_standin, job_id)
    assert "epochs: 'ten' is not of type 'integer'" in wrong["content"]
    assert "Additional properties are not allowed ('epoch' was unexpected)" in unknown["content"]
    assert json.loads(received(out_dir, job_id)["argv"][0]) == {"epochs": 1, "lr": 0.01}
    assert "Defaults filled in" in fields(discord_standin.first_version(acks(discord_standin)[0]))


async def test_failing_script_reports_exit_code_and_log_tail(start_adjutant, discord_standin, out_dir) -> None:
    async with start_adjutant(launch_env()):
        job_id = await launch(discord_standin, '{"exit": 3, "lines": 3}')
        done = await wait_report(discord_standin, job_id)
    assert done["embeds"][0]["title"] == f"❌ Experiment {job_id} failed"
    got = fields(done)
    assert got["Exit code"] == "3"
    assert "something went wrong: exiting with 3" in got["End of the log"]


async def test_concurrency_one_queues_the_second(start_adjutant, discord_standin, out_dir) -> None:
    async with start_adjutant(launch_env()) as bot:
        first = await launch(discord_standin, '{"sleep": 1.5}')
        second = await launch(discord_standin, '{"sleep": 0}')
        assert "queued; 1 job ahead" in acks(discord_standin)[1]["embeds"][0]["title"]
        await wait_report(discord_standin, second)
        store = bot.get_cog("Experiments").services.jobs
        a = await asyncio.to_thread(store.get, first)
        b = await asyncio.to_thread(store.get, second)
    assert a.state == b.state == "succeeded"
    assert b.started_at >= a.ended_at, "the second started only when the first ended"


async def test_cancel_kills_stubborn_script_and_grandchild(start_adjutant, discord_standin, out_dir) -> None:
    async with start_adjutant(launch_env()):
        job_id = await launch(discord_standin, '{"ignore_term": true, "sleep": 600}')
        await eventually(lambda: (out_dir / f"{job_id}.json").exists(), timeout=15)
        got = received(out_dir, job_id)
        count = len(discord_standin.sent())
        await discord_standin.post(f"$cancel {job_id}")
        reply = await discord_standin.wait_for_message(after=count, timeout=10)
        assert "SIGTERM sent" in reply["content"]
        done = await wait_report(discord_standin, job_id, timeout=30)
    assert done["embeds"][0]["title"] == f"⏹️ Experiment {job_id} cancelled"
    assert fields(done)["Exit code"] == "signal 9"
    assert fields(done)["Cancelled by"] == "admin"
    await eventually(lambda: not pid_alive(got["pid"]) and not pid_alive(got["grandchild"]), timeout=10)


async def test_cancel_stops_a_script_by_sigterm_well_before_the_grace_period(
    start_adjutant, discord_standin, out_dir
) -> None:
    """The supervisor ignores SIGTERM; a job must not inherit that (ignored signals survive exec)."""
    async with start_adjutant(launch_env(ADJUTANT_CANCEL_GRACE_SECONDS="120")):
        job_id = await launch(discord_standin, '{"sleep": 600}')
        await eventually(lambda: (out_dir / f"{job_id}.json").exists(), timeout=15)
        status = Path(f"/proc/{received(out_dir, job_id)['pid']}/status").read_text()
        ignored = int(re.search(r"SigIgn:\s*([0-9a-f]+)", status)[1], 16)  # type: ignore[index]
        assert not ignored & (1 << (signal.SIGTERM - 1) | 1 << (signal.SIGINT - 1) | 1 << (signal.SIGHUP - 1))
        await discord_standin.post(f"$cancel {job_id}")
        done = await wait_report(discord_standin, job_id, timeout=20)
    assert fields(done)["Exit code"] == "signal 15", "SIGTERM did it, not the SIGKILL 120 s later"


async def test_cancel_queued_job_and_refusals(start_adjutant, discord_standin, out_dir) -> None:
    async with start_adjutant(launch_env()):
        first = await launch(discord_standin, '{"sleep": 600}')
        second = await launch(discord_standin, '{"epochs": 1}')
        count = len(discord_standin.sent())
        await discord_standin.post(f"$cancel {second}", author="member")
        refused = await discord_standin.wait_for_message(after=count, timeout=10)
        assert "not allowed" in refused["content"]
        count = len(discord_standin.sent())
        await discord_standin.post(f"$cancel {second}")
        removed = await discord_standin.wait_for_message(after=count, timeout=10)
        assert "Removed job" in removed["content"]
        await wait_report(discord_standin, second)
        await discord_standin.post(f"$cancel {first}")
        await wait_report(discord_standin, first)
        count = len(discord_standin.sent())
        await discord_standin.post("$cancel jzzzzzz")
        unknown = await discord_standin.wait_for_message(after=count, timeout=10)
    assert not (out_dir / f"{second}.json").exists(), "a cancelled queued job never runs"
    assert "No job `jzzzzzz`" in unknown["content"]


async def test_cancel_button(start_adjutant, discord_standin, out_dir) -> None:
    async with start_adjutant(launch_env()):
        job_id = await launch(discord_standin, '{"sleep": 600}')
        ack = acks(discord_standin)[0]
        await discord_standin.click(ack, f"adjutant:cancel:{job_id}", author="member")
        await eventually(lambda: len(discord_standin.interaction_responses) == 1, timeout=10)
        refusal = discord_standin.interaction_responses[0]
        assert refusal["data"]["flags"] & 64, "the refusal is ephemeral"
        assert "not allowed" in refusal["data"]["content"]
        await discord_standin.click(ack, f"adjutant:cancel:{job_id}", author="admin")
        done = await wait_report(discord_standin, job_id)
    assert "cancelled" in done["embeds"][0]["title"]


async def test_logs_small_and_huge(start_adjutant, discord_standin, out_dir) -> None:
    async with start_adjutant(launch_env()):
        small = await launch(discord_standin, '{"lines": 5}')
        huge = await launch(discord_standin, '{"lines": 110000}')  # ≈ 10 MB of log
        await wait_report(discord_standin, huge, timeout=60)
        count = len(discord_standin.sent())
        # (the "your queue is done" note for the two jobs may come in between: the answers are waited for by content)
        await discord_standin.post(f"$logs {small} 3")
        short = await discord_standin.wait_for_message(lambda m: m["content"].startswith("Last "), after=count)
        count = len(discord_standin.sent())
        await discord_standin.post(f"$logs {huge} 500")
        attached = await discord_standin.wait_for_message(
            lambda m: m["content"].startswith("The log of"), after=count, timeout=20
        )
    assert "step 00000004" in short["content"] and short["content"].startswith("Last 3 line(s)")
    assert len(short["content"]) <= 2000
    assert len(attached["attachments"]) == 1
    request = [r for r in discord_standin.rest("POST", "/messages") if r.files][-1]
    data = request.files[f"{huge}.log"]
    assert 0 < len(data) <= 8 * 1024 * 1024
    assert data.rstrip().endswith(b"(succeeded)")
    assert "bytes" in attached["content"] and "last" in attached["content"]


async def test_sweep_preview_confirm_and_cap(start_adjutant, discord_standin, out_dir) -> None:
    async with start_adjutant(launch_env(ADJUTANT_MAX_SWEEP="4", ADJUTANT_MAX_CONCURRENT="2")) as bot:
        await discord_standin.post('$sweep {"lr": [0.1, 0.01, 0.001], "batch_size": [32, 64]}')
        too_big = await discord_standin.wait_for_message(timeout=10)
        assert "6 combinations; the limit is 4" in too_big["content"]
        count = len(discord_standin.sent())
        await discord_standin.post('$sweep {"lr": [0.1, 0.01], "batch_size": [32, 64], "epochs": 1}')
        preview = await discord_standin.wait_for_message(after=count, timeout=10)
        assert preview["embeds"][0]["title"] == "Sweep: 4 experiment(s)"
        assert '{"lr": 0.1, "batch_size": 32, "epochs": 1}' in preview["embeds"][0]["description"]
        confirm = discord_standin.buttons(preview)[0]
        await discord_standin.click(preview, confirm, author="member")
        await eventually(lambda: len(discord_standin.interaction_responses) == 1, timeout=10)
        assert "Only the person" in discord_standin.interaction_responses[0]["data"]["content"]
        await discord_standin.click(preview, confirm, author="admin")
        await eventually(lambda: len(discord_standin.interaction_responses) == 2, timeout=10)
        store = bot.get_cog("Experiments").services.jobs
        await eventually(lambda: len(list(out_dir.glob("*.json"))) == 4, timeout=30)
        jobs = await asyncio.to_thread(store.recent, 10)
    assert "Queued 4 experiment(s) of sweep" in discord_standin.interaction_responses[1]["data"]["content"]
    assert len({j.sweep_id for j in jobs}) == 1 and jobs[0].sweep_id.startswith("sweep-")
    assert sorted((j.params["lr"], j.params["batch_size"]) for j in jobs) == [
        (0.01, 32),
        (0.01, 64),
        (0.1, 32),
        (0.1, 64),
    ]
    assert received(out_dir, jobs[0].id)["env"]["WANDB_RUN_GROUP"] == jobs[0].sweep_id


async def test_jobs_and_rerun(start_adjutant, discord_standin, out_dir) -> None:
    async with start_adjutant(launch_env()):
        first = await launch(discord_standin, '{"epochs": 1, "lr": 0.1}')
        await wait_report(discord_standin, first)
        count = len(discord_standin.sent())
        await discord_standin.post(f"$rerun {first} lr=0.01 batch_size=64")
        await eventually(lambda: len(acks(discord_standin)) == 2, timeout=10)
        rerun_ack = acks(discord_standin)[1]
        second = job_id_of(rerun_ack)
        await wait_report(discord_standin, second)
        count = len(discord_standin.sent())
        await discord_standin.post("$queue")
        listing = await discord_standin.wait_for_message(after=count, timeout=10)
    assert f"Rerun of job `{first}`" in rerun_ack["content"]
    assert "~ lr: 0.1 → 0.01" in rerun_ack["content"] and "+ batch_size = 64" in rerun_ack["content"]
    assert json.loads(received(out_dir, second)["argv"][0]) == {"epochs": 1, "lr": 0.01, "batch_size": 64}
    text = json.dumps(listing["embeds"][0])
    assert first in text and second in text and "Recently ended" in text


async def test_launching_off_without_script(start_adjutant, discord_standin, out_dir) -> None:
    async with start_adjutant():
        await discord_standin.post('$experiment {"epochs": 1}')
        reply = await discord_standin.wait_for_message(timeout=10)
    assert "Launching is off" in reply["content"]


async def test_vanished_supervisor_is_reported_lost(start_adjutant, discord_standin, out_dir) -> None:
    async with start_adjutant(launch_env(ADJUTANT_RETRIES="0")) as bot:
        job_id = await launch(discord_standin, '{"sleep": 600}')
        await eventually(lambda: (out_dir / f"{job_id}.json").exists(), timeout=15)
        store = bot.get_cog("Experiments").services.jobs
        job = await asyncio.to_thread(store.get, job_id)
        os.kill(job.supervisor_pid, signal.SIGKILL)
        done = await wait_report(discord_standin, job_id, timeout=15)
    assert done["embeds"][0]["title"] == f"❓ Experiment {job_id} lost"
    assert "supervisor process" in fields(done)["Why"]
    await eventually(lambda: not pid_alive(received(out_dir, job_id)["pid"]), timeout=10)


async def test_a_lost_job_is_retried_once_as_the_same_job_and_run(start_adjutant, discord_standin, out_dir) -> None:
    """ADJUTANT_RETRIES=1 (the default): the supervisor is SIGKILLed during attempt 1; attempt 2 runs the same job
    with the same W&B run id and succeeds; the thread says so once; a second loss is final."""
    async with start_adjutant(launch_env()) as bot:
        job_id = await launch(discord_standin, '{"sleep": 600}')
        await eventually(lambda: (out_dir / f"{job_id}.json").exists(), timeout=15)
        first = received(out_dir, job_id)
        (out_dir / f"{job_id}.json").unlink()
        store = bot.get_cog("Experiments").services.jobs
        job = await asyncio.to_thread(store.get, job_id)
        os.kill(job.supervisor_pid, signal.SIGKILL)
        await eventually(lambda: (out_dir / f"{job_id}.json").exists(), timeout=20)  # attempt 2 started
        second = received(out_dir, job_id)
        assert (
            second["env"]["WANDB_RUN_ID"] == first["env"]["WANDB_RUN_ID"] and second["env"]["WANDB_RESUME"] == "allow"
        )
        assert second["pid"] != first["pid"]
        retried = await asyncio.to_thread(store.get, job_id)
        assert retried.attempt == 2 and "lost" in (retried.retried_because or "")
        await eventually(lambda: any("attempt 2 of 2" in t for t in _all_titles(discord_standin)), timeout=15)
        os.kill(retried.supervisor_pid, signal.SIGKILL)  # attempt 2 lost too: no third attempt
        done = await wait_report(discord_standin, job_id, timeout=20)
    assert done["embeds"][0]["title"] == f"❓ Experiment {job_id} lost"
    assert sum("attempt 2 of 2" in t for t in _all_titles(discord_standin)) == 1
    await eventually(lambda: not pid_alive(first["pid"]) and not pid_alive(second["pid"]), timeout=10)


def _all_titles(discord: DiscordStandIn) -> list[str]:
    return [e.get("title", "") for m in discord.sent() for e in m["embeds"]]


async def test_bot_killed_during_job_reports_end_once_after_restart(tmp_path: Path, out_dir: Path) -> None:
    """SIGKILL the standalone bot while its job runs; the job keeps running; the restarted bot reports it once."""
    state = tmp_path / "state"
    async with DiscordStandIn(token=TOKEN) as standin:
        env = subprocess_env(
            standin,
            {
                "ADJUTANT_STATE_DIR": str(state),
                "ADJUTANT_EXPERIMENT_SCRIPT": str(SCRIPT),
                "ADJUTANT_TEST_OUT": str(out_dir),
                "HOME": str(tmp_path),
            },
        )

        async def start_bot() -> asyncio.subprocess.Process:
            return await start_standalone(standin, env, tmp_path)

        bot = await start_bot()
        try:
            job_id = await launch(standin, '{"sleep": 4}')
            await eventually(lambda: (out_dir / f"{job_id}.json").exists(), timeout=15)
            bot.kill()
            await bot.wait()
            script_pid = received(out_dir, job_id)["pid"]
            assert pid_alive(script_pid), "the job survives the bot"
            await eventually(lambda: not pid_alive(script_pid), timeout=20)

            def recorded() -> tuple[str, int]:
                with sqlite3.connect(state / "adjutant.sqlite3") as db:
                    return db.execute("SELECT state, reported FROM jobs WHERE id=?", (job_id,)).fetchone()

            await eventually(lambda: recorded()[0] == "succeeded", timeout=10)  # the supervisor wrote the end
            assert recorded() == ("succeeded", 0), "ended while the bot was down: not reported yet"
            bot = await start_bot()
            await wait_report(standin, job_id, timeout=30)
            await asyncio.sleep(3)
        finally:
            if bot.returncode is None:
                bot.send_signal(signal.SIGTERM)
                await asyncio.wait_for(bot.wait(), 20)
    assert len(report(standin, job_id)) == 1
    assert report(standin, job_id)[0]["embeds"][0]["title"] == f"✅ Experiment {job_id} succeeded"


async def test_one_story_per_run_with_wandb_reporting(
    start_adjutant, discord_standin, out_dir, wandb_standin, monkeypatch
) -> None:
    """A launched job's W&B run: its start replies to the launch; its end is told once, by the job's report."""
    from tests.cogs.conftest import WANDB_ENV

    monkeypatch.delenv("WANDB_SERVICE")  # the fake one of out_dir would capture this process's wandb client

    async with start_adjutant({**WANDB_ENV, **launch_env()}):
        await discord_standin.wait_for_message(lambda m: bool(m["embeds"]), timeout=20)  # connect summary
        await asyncio.sleep(1.5)
        job_id = await launch(discord_standin, '{"sleep": 3}')
        await eventually(lambda: (out_dir / f"{job_id}.json").exists(), timeout=15)
        run_id = received(out_dir, job_id)["env"]["WANDB_RUN_ID"]
        wandb_standin.create_run(run_id, display_name="job-run", state="running")  # what wandb.init() would do
        await eventually(
            lambda: any("job-run started" in e.get("title", "") for m in discord_standin.sent() for e in m["embeds"]),
            timeout=15,
        )
        wandb_standin.update_run(run_id, state="finished", summary={"loss": 0.25})
        done = await wait_report(discord_standin, job_id, timeout=30)
        await asyncio.sleep(3)  # a few more polls: no separate "finished" announcement may follow
    started = next(
        m for m in discord_standin.sent() if any("job-run started" in e.get("title", "") for e in m["embeds"])
    )
    assert started["channel_id"] == done["channel_id"] == acks(discord_standin)[0]["id"], "both in the job's thread"
    titles = [e.get("title", "") for m in discord_standin.sent() for e in m["embeds"]]
    assert not any("job-run finished" in t for t in titles), titles
    got = fields(done)
    assert got["loss"] == "0.25"
    assert run_id in got["W&B run"] and "job-run" in got["W&B run"]


async def test_a_launch_resolves_its_channels_route_once(start_adjutant, discord_standin, out_dir, monkeypatch) -> None:
    """Issue 22: the route was resolved 4 times per message; the check resolves it and the launch reuses it."""
    import adjutant._cog

    calls = []
    real = adjutant._cog.route_in

    def counted(routes, channel):
        calls.append(channel)
        return real(routes, channel)

    async with start_adjutant(launch_env()):
        monkeypatch.setattr(adjutant._cog, "route_in", counted)
        await launch(discord_standin, '{"sleep": 0}')
        monkeypatch.setattr(adjutant._cog, "route_in", real)
    assert len(calls) == 1, calls
