"""``$sweep`` reads a W&B sweep configuration from an attached .yaml/.yml/.json file (a message's attachment, or the
slash command's attachment option, type 11), at most 64 KB; anything else is refused with a sentence. Nothing runs
here: the preview is the answer (Queue them is tested in test_sweeps.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from tests.cogs.test_sweeps import sweep_env
from tests.standins.discord_standin import DiscordStandIn, snowflake

CONFIG = b"""method: random
metric: {name: loss, goal: minimize}
run_cap: 5
parameters:
  x: {distribution: uniform, min: 0.0, max: 1.0}
"""


@pytest.fixture
async def files() -> AsyncIterator[dict[str, Any]]:
    """A tiny file server standing in for Discord's CDN: ``served[name] = bytes``; ``served["_base"]`` its URL;
    ``served["_asked"]`` the names fetched; ``served["_delay"]`` seconds it takes to answer."""
    served: dict[str, Any] = {"_asked": [], "_delay": 0.0}

    async def get(request: web.Request) -> web.Response:
        served["_asked"].append(request.match_info["name"])
        await asyncio.sleep(served["_delay"])
        data = served.get(request.match_info["name"])
        return web.Response(body=data) if isinstance(data, bytes) else web.Response(status=404)

    app = web.Application()
    app.router.add_get("/attachments/{name}", get)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    served["_base"] = f"http://127.0.0.1:{port}/attachments"
    yield served
    await runner.cleanup()


def attachment(files: dict[str, Any], name: str, data: bytes, size: int | None = None) -> dict[str, Any]:
    files[name] = data
    url = f"{files['_base']}/{name}"
    return {
        "id": str(snowflake()), "filename": name, "size": len(data) if size is None else size, "url": url,
        "proxy_url": url, "content_type": "application/octet-stream",
    }  # fmt: skip


async def post_with_file(discord: DiscordStandIn, content: str, item: dict[str, Any]) -> None:
    """A member posts ``content`` with one attached file (Discord puts it in the message's ``attachments``)."""
    message = discord._message(discord.channel_id("general"), discord.member("admin"), content, {"attachments": [item]})
    await discord.dispatch("MESSAGE_CREATE", message)


async def test_an_attached_yaml_file_is_the_sweep_configuration(start_adjutant, discord_standin, files) -> None:
    async with start_adjutant(sweep_env()):
        count = len(discord_standin.sent())
        await post_with_file(discord_standin, "$sweep --parallel 2 --seed 9", attachment(files, "sweep.yaml", CONFIG))
        preview = await discord_standin.wait_for_message(lambda m: bool(m["embeds"]), after=count, timeout=15)
    embed = preview["embeds"][0]
    assert embed["title"] == "Sweep: random, 5 trials"
    assert "Parallel: 2 at a time · seed 9" in embed["description"] and "• x:" in embed["description"]
    assert discord_standin.buttons(preview), "Queue them / Never mind"


async def test_wrong_files_are_refused_with_a_sentence(start_adjutant, discord_standin, files) -> None:
    async with start_adjutant(sweep_env()):
        for item, said in (
            (attachment(files, "big.yaml", CONFIG, size=70_000), "at most 64 KB"),
            (attachment(files, "sweep.txt", CONFIG), "as .yaml, .yml or .json"),
            (attachment(files, "binary.json", b"\xff\xfe\x00bad"), "not UTF-8 text"),
            (attachment(files, "both.yaml", CONFIG), "once"),
        ):
            count = len(discord_standin.sent())
            text = "$sweep" if item["filename"] != "both.yaml" else '$sweep {"x": [1, 2]}'
            await post_with_file(discord_standin, text, item)
            answer = await discord_standin.wait_for_message(after=count, timeout=15)
            assert said in answer["content"] and answer["content"].startswith("Not queued"), answer["content"]
            assert not answer["embeds"]
        assert "big.yaml" not in str([r.path for r in discord_standin.rest()]), "a file too large is not fetched"


async def test_the_slash_command_takes_the_file_as_its_attachment_option(
    start_adjutant, discord_standin, files
) -> None:
    async with start_adjutant(sweep_env()):
        item = attachment(files, "sweep.json", b'{"method": "grid", "parameters": {"x": {"values": [1, 2, 3]}}}')
        data = {
            "id": str(snowflake()), "name": "sweep", "type": 1,
            "options": [{"name": "file", "type": 11, "value": item["id"]}],
            "resolved": {"attachments": {item["id"]: item}},
        }  # fmt: skip
        interaction = await discord_standin._interact(2, data, "admin", discord_standin.channels["general"])
        await discord_standin.wait_until(
            lambda: any(m["embeds"] for m in discord_standin.responses(interaction)), timeout=15
        )
        answer = discord_standin.responses(interaction)[0]  # the deferred answer, replaced by the preview
    assert answer["embeds"][0]["title"] == "Sweep: grid, 3 trials", answer


def slash_sweep(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(snowflake()), "name": "sweep", "type": 1,
        "options": [{"name": "file", "type": 11, "value": item["id"]}],
        "resolved": {"attachments": {item["id"]: item}},
    }  # fmt: skip


async def test_slash_sweep_checks_rights_before_fetching_and_defers_before_reading(
    start_adjutant, discord_standin, files
) -> None:
    """A member without launch rights is refused privately and the file is never fetched; a file that takes longer
    than Discord's 3 s to fetch still gets its preview (the interaction was deferred first)."""
    async with start_adjutant(sweep_env()):
        item = attachment(files, "denied.yaml", CONFIG)
        denied = await discord_standin._interact(2, slash_sweep(item), "member", discord_standin.channels["general"])
        await discord_standin.wait_until(lambda: bool(discord_standin.responses(denied)), timeout=15)
        refusal = discord_standin.responses(denied)[0]
        assert refusal["flags"] & 64 and "not allowed" in refusal["content"], refusal
        assert files["_asked"] == [], "nothing fetched for a member who may not sweep"
        files["_delay"] = discord_standin.interaction_deadline + 1.5
        slow = attachment(files, "slow.yaml", CONFIG)
        interaction = await discord_standin._interact(
            2, slash_sweep(slow), "admin", discord_standin.channels["general"]
        )
        await discord_standin.wait_until(
            lambda: any(m["embeds"] for m in discord_standin.responses(interaction)), timeout=20
        )
        answer = discord_standin.responses(interaction)[0]
    callbacks = [r for r in discord_standin.interaction_responses if r["interaction_id"] == interaction]
    assert [r["type"] for r in callbacks] == [5], "deferred (thinking…) before the file was read"
    assert answer["embeds"][0]["title"] == "Sweep: random, 5 trials" and discord_standin.buttons(answer)
    assert files["_asked"] == ["slow.yaml"]


async def test_a_message_nested_too_deeply_gets_a_sentence(start_adjutant, discord_standin) -> None:
    """2,000 characters of ``parameters: [[[[…]]]]``: parsed off the event loop, refused in words (YAML's recursion
    limit is not "Something went wrong")."""
    content = "$sweep parameters: " + "[" * 990 + "]" * 990
    assert len(content) <= 2000
    async with start_adjutant(sweep_env()):
        count = len(discord_standin.sent())
        await discord_standin.post(content)
        answer = await discord_standin.wait_for_message(after=count, timeout=15)
    assert answer["content"] == "Not queued: the sweep configuration is nested too deeply", answer["content"]
    assert "went wrong" not in answer["content"]
