"""``python -m adjutant`` as a real process: --help, --check, and a run against the Discord stand-in."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from adjutant.settings import ENV_VARS
from tests.conftest import subprocess_env
from tests.standins.discord_standin import DiscordStandIn

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.Gabcde.secret-token-value"


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run(
        [sys.executable, "-m", "adjutant", *args],
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_help_documents_every_option_and_variable(tmp_path: Path) -> None:
    result = run_cli("--help", env={}, cwd=tmp_path)
    assert result.returncode == 0
    for option in ("--env-file", "--check", "--log-level", "--log-file"):
        assert option in result.stdout
    for var in ENV_VARS:
        assert var.name in result.stdout


def test_check_ok(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    (tmp_path / ".env").write_text(
        f"DISCORD_TOKEN={TOKEN}\nWANDB_PROJECT=mnist\nWANDB_API_KEY={'k' * 40}\nADJUTANT_EXPERIMENT_SCRIPT={script}\n"
    )
    result = run_cli("--check", env={}, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "configuration OK" in result.stdout
    assert "launching: " + str(script) in result.stdout
    assert TOKEN not in result.stdout + result.stderr


def test_check_reports_missing_token_and_wandb_key(tmp_path: Path) -> None:
    result = run_cli("--check", env={"WANDB_PROJECT": "mnist"}, cwd=tmp_path)
    assert result.returncode == 1
    assert "DISCORD_TOKEN is not set" in result.stdout
    assert "W&B credentials are missing" in result.stdout


def test_check_bad_value_names_variable(tmp_path: Path) -> None:
    result = run_cli("--check", env={"ADJUTANT_METRIC_GOAL": "up", "DISCORD_TOKEN": TOKEN}, cwd=tmp_path)
    assert result.returncode == 2
    assert "ADJUTANT_METRIC_GOAL must be 'min' or 'max'" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_script_not_executable(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o644)
    result = run_cli("--check", env={"ADJUTANT_EXPERIMENT_SCRIPT": str(script)}, cwd=tmp_path)
    assert result.returncode == 2
    assert "chmod +x" in result.stderr


def test_env_file_option(tmp_path: Path) -> None:
    missing = run_cli("--check", "--env-file", str(tmp_path / "nope.env"), env={}, cwd=tmp_path)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    custom = tmp_path / "custom.env"
    custom.write_text(f"DISCORD_TOKEN={TOKEN}\nADJUTANT_CHANNEL=lab\n")
    result = run_cli("--check", "--env-file", str(custom), env={"ADJUTANT_CHANNEL": "from-env"}, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "channel: from-env" in result.stdout, "the environment wins over the file"


def test_run_without_token_says_how(tmp_path: Path) -> None:
    result = run_cli(env={}, cwd=tmp_path)
    assert result.returncode == 2
    assert "DISCORD_TOKEN is not set" in result.stderr


async def start_process(standin: DiscordStandIn, tmp_path: Path, **extra: str) -> asyncio.subprocess.Process:
    env = subprocess_env(standin, {"ADJUTANT_STATE_DIR": str(tmp_path / "state"), "HOME": str(tmp_path), **extra})
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "adjutant",
        "--log-level",
        "DEBUG",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_standalone_process_answers_hello_and_stops_on_sigterm(tmp_path: Path) -> None:
    async with DiscordStandIn(token=TOKEN) as standin:
        process = await start_process(standin, tmp_path)
        try:
            await asyncio.wait_for(standin.connected.wait(), 30)
            await standin.post("$hello")
            reply = await standin.wait_for_message(lambda m: m["content"] == "Hello!", timeout=15)
            assert reply["channel_id"] == str(standin.channel_id("general"))
            process.send_signal(signal.SIGTERM)
            stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert process.returncode == 0, stderr.decode()
    logs = stdout.decode() + stderr.decode()
    assert "W&B reporting: off" in logs
    assert TOKEN not in logs, "the token must never be logged, even at DEBUG"


async def test_message_content_intent_refused_explains_fix(tmp_path: Path) -> None:
    async with DiscordStandIn(token=TOKEN, allow_message_content=False) as standin:
        process = await start_process(standin, tmp_path)
        _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 3
    text = stderr.decode()
    assert "Privileged Gateway Intents -> turn on MESSAGE CONTENT INTENT" in text
    assert "Traceback" not in text


async def test_rejected_token_explains_fix(tmp_path: Path) -> None:
    async with DiscordStandIn(token="the-right-token") as standin:
        process = await start_process(standin, tmp_path, DISCORD_TOKEN=TOKEN)
        _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 4
    text = stderr.decode()
    assert "rejected DISCORD_TOKEN" in text
    assert "Traceback" not in text
    assert TOKEN not in text


@pytest.mark.parametrize("argv", [["--version"]])
def test_version(tmp_path: Path, argv: list[str]) -> None:
    result = run_cli(*argv, env={}, cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("adjutant ")
