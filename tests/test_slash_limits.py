"""Every slash command and context menu Adjutant registers fits Discord's published limits (the strict stand-in
refuses the same at `--sync`; these checks name the offending command without a bot)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from typing import Any

import discord
import pytest
from discord.ext import commands

NAME = re.compile(r"^[-_'\w]{1,32}$")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Iterator[None]:
    for var in ("ADJUTANT_CHANNEL", "ADJUTANT_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.setenv("WANDB_ENTITY", "team")
    monkeypatch.setenv("WANDB_PROJECT", "proj")
    monkeypatch.setenv("ADJUTANT_EXPERIMENT_SCRIPT", str(script))
    monkeypatch.setenv("ADJUTANT_STATE_DIR", str(tmp_path / "state"))
    yield


def walk(payload: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, payload
    for option in payload.get("options", []):
        if option.get("type") in (1, 2):  # subcommand, subcommand group
            yield from walk(option, f"{path} {option['name']}")


async def registered(group: str | None, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    if group:
        monkeypatch.setenv("ADJUTANT_COMMAND_GROUP", group)
    async with commands.Bot("$", intents=discord.Intents.default()) as bot:
        await bot.load_extension("adjutant")
        try:
            return [command.to_dict(bot.tree) for command in bot.tree.get_commands()]
        finally:
            await bot.unload_extension("adjutant")


@pytest.mark.parametrize("group", [None, "adj"])
async def test_every_command_fits_discords_limits(
    env: None, monkeypatch: pytest.MonkeyPatch, group: str | None
) -> None:
    payloads = await registered(group, monkeypatch)
    assert payloads, "no application command registered"
    problems = []
    chat = [p for p in payloads if p.get("type", 1) == 1]
    for payload in chat:
        for path, command in walk(payload, payload["name"]):
            name = command["name"]
            if not NAME.match(name) or name != name.lower():
                problems.append(f"/{path}: name {name!r}")
            if not 1 <= len(command.get("description", "")) <= 100:
                problems.append(f"/{path}: description of {len(command.get('description', ''))} characters")
            options = [o for o in command.get("options", []) if o.get("type") not in (1, 2)]
            if len(command.get("options", [])) > 25:
                problems.append(f"/{path}: {len(command['options'])} options")
            seen_optional = False
            for option in options:
                if not 1 <= len(option.get("description", "")) <= 100:
                    problems.append(f"/{path} {option['name']}: option description of {len(option['description'])}")
                if not NAME.match(option["name"]):
                    problems.append(f"/{path} {option['name']}: option name")
                if option.get("required") and seen_optional:
                    problems.append(f"/{path} {option['name']}: required after optional")
                seen_optional |= not option.get("required", False)
                if len(option.get("choices", [])) > 25:
                    problems.append(f"/{path} {option['name']}: more than 25 choices")
    for payload in payloads:
        if payload.get("type") in (2, 3) and payload.get("description"):
            problems.append(f"context menu {payload['name']}: has a description")
    assert len(chat) <= 100
    assert not problems, problems
    assert all(unicodedata.is_normalized("NFC", p["name"]) for p in payloads)
