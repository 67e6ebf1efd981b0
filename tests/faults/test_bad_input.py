"""Faults: hostile or broken input through every door into a script. Each gets a specific refusal, nothing is
launched, and what reaches a script is always valid JSON."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.cogs.conftest import WANDB_ENV
from tests.cogs.test_experiments import acks, launch_env
from tests.standins.discord_standin import DiscordStandIn
from tests.standins.wandb_standin import WandbStandIn


async def reply_to(discord: DiscordStandIn, content: str) -> dict:
    count = len(discord.sent())
    await discord.post(content)
    return await discord.wait_for_message(lambda m: bool(m.get("content")), after=count, timeout=15)


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ('$experiment {"lr": 1e999}', "1e999 is too large for a number"),
        ("$experiment lr=-1e400", "too large for a number"),
        ('$experiment {"lr": NaN}', "NaN is not allowed"),
        ('$experiment {"lr\u200b": 0.1, "lr": 0.2}', "U+200B ZERO WIDTH SPACE"),
        ('$experiment {"name": "\ud800"}', "lone surrogate, U+D800"),
        ('$sweep {"lr": [0.1, 1e999]}', "too large for a number"),
        ('$sweep {"lr\u2060": [0.1, 0.2]}', "invisible or control character"),
        ("$runs ²", "neither a run state"),
        ('$experiment --gpus ² {"lr": 1}', "--gpus must be a whole number from 0 to 64, not '²'"),
        ('$experiment --gpus ٣ {"lr": 1}', "--gpus must be a whole number from 0 to 64, not '٣'"),
        ('$sweep --gpus \uff13 {"lr": [1, 2]}', "--gpus must be a whole number from 0 to 64"),
        ("$rerun jaaaaaa --gpus ① lr=1", "--gpus must be a whole number from 0 to 64"),
        ("$logs jaaaaaa ٣", "the number of lines must be a whole number from 1 to 1000, not '٣'"),
        ("$audit ²", "the number of entries must be a whole number"),
        ("$usage fortnight", "'fortnight' is neither a period (day, week or month) nor a member of this server"),
        ("$usage week mallory", "No member of this server is named 'mallory'"),
        ("$usage @mallory", "No member of this server is named '@mallory'"),
        ("$usage day week", "give one period"),
    ],
)
async def test_each_bad_input_gets_a_specific_refusal(
    start_adjutant, discord_standin: DiscordStandIn, out_dir, command: str, expected: str
) -> None:
    async with start_adjutant({**launch_env(), **WANDB_ENV}):
        answer = await reply_to(discord_standin, command)
        await asyncio.sleep(0.3)
    assert expected in answer["content"], answer["content"]
    assert "Something went wrong" not in answer["content"]
    assert not acks(discord_standin)
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"lr": float("nan")}, "NaN is not allowed"),
        ({"deep": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}}, "nested too deeply"),
        ({"blob": "x" * 50_000}, "too large"),
    ],
)
async def test_rerun_of_a_w_and_b_run_goes_through_the_same_validation(
    start_adjutant,
    discord_standin: DiscordStandIn,
    wandb_standin: WandbStandIn,
    out_dir,
    monkeypatch,
    config: dict,
    expected: str,
) -> None:
    monkeypatch.delenv("WANDB_SERVICE")  # out_dir's fake one would capture this process's wandb client
    wandb_standin.create_run("badcfg", state="finished", config=config)
    async with start_adjutant({**launch_env(), **WANDB_ENV}):
        await asyncio.sleep(1)
        answer = await reply_to(discord_standin, "$rerun badcfg")
    assert "Not launched" in answer["content"] and expected in answer["content"], answer["content"]
    assert not acks(discord_standin)
    assert list(out_dir.iterdir()) == []


async def test_what_reaches_the_script_is_valid_json(start_adjutant, discord_standin: DiscordStandIn, out_dir) -> None:
    from tests.cogs.test_experiments import launch, received, wait_report

    async with start_adjutant(launch_env()):
        job_id = await launch(discord_standin, 'lr=1e300 name="résumé ✓" big=123456789012345678901234567890')
        await wait_report(discord_standin, job_id)
    argument = received(out_dir, job_id)["argv"][0]
    assert json.loads(argument) == {"lr": 1e300, "name": "résumé ✓", "big": 123456789012345678901234567890}
    json.loads(argument, parse_constant=lambda name: pytest.fail(f"{name} reached the script"))
