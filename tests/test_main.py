"""``python -m adjutant`` as a real process: --help, --check, and a run against the Discord stand-in."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import discord
import pytest

from adjutant.doctor import CHANNEL_NEEDS
from adjutant.settings import SETTINGS, WANDB_VARIABLES
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
    for name in [*(s.env for s in SETTINGS), *(v.env for v in WANDB_VARIABLES)]:
        assert name in result.stdout, f"--help does not list {name}"


def test_check_reports_missing_token_and_wandb_key(tmp_path: Path) -> None:
    result = run_cli("--check", env={"WANDB_PROJECT": "mnist"}, cwd=tmp_path)
    assert result.returncode == 1
    assert "DISCORD_TOKEN is not set" in result.stdout
    assert "W&B credentials are missing" in result.stdout


def test_check_bad_value_names_variable(tmp_path: Path) -> None:
    result = run_cli("--check", env={"ADJUTANT_METRIC_GOAL": "up", "DISCORD_TOKEN": TOKEN}, cwd=tmp_path)
    assert result.returncode == 2
    assert "ADJUTANT_METRIC_GOAL must be 'min' or 'max'" in result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    result = run_cli(env={"ADJUTANT_METRIC_GOAL": "up", "DISCORD_TOKEN": TOKEN}, cwd=tmp_path)
    assert result.returncode == 2
    assert "ADJUTANT_METRIC_GOAL must be 'min' or 'max'" in result.stderr


def test_check_reports_every_problem_in_one_run(tmp_path: Path) -> None:
    env = {"ADJUTANT_METRIC_GOAL": "up", "ADJUTANT_POLL_SECONDS": "often", "WANDB_PROJECT": "mnist"}
    result = run_cli("--check", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "ADJUTANT_METRIC_GOAL must be 'min' or 'max'" in result.stdout
    assert "ADJUTANT_POLL_SECONDS must be a number" in result.stdout
    assert "DISCORD_TOKEN is not set" in result.stdout  # the checks after the configuration still ran
    assert "W&B credentials are missing" in result.stdout


def test_env_example_option_prints_the_file(tmp_path: Path) -> None:
    result = run_cli("--env-example", env={}, cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout == (Path(__file__).parent.parent / ".env.example").read_text()


async def doctor(tmp_path: Path, standin: DiscordStandIn, *args: str, **extra: str) -> tuple[int, str]:
    """Run ``python -m adjutant --check`` (or other args) as a process against the stand-ins."""
    env = subprocess_env(standin, {"ADJUTANT_STATE_DIR": str(tmp_path / "state"), "HOME": str(tmp_path), **extra})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adjutant", *(args or ("--check",)), cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 90)
    return process.returncode or 0, output.decode()


@pytest.fixture
def wandb_server():
    from tests.standins.wandb_standin import WandbStandIn

    with WandbStandIn() as server:
        yield server


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "run.sh"
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


async def test_check_all_good(tmp_path: Path, wandb_server, script: Path) -> None:
    from tests.standins.wandb_standin import API_KEY

    wandb_server.create_run(state="finished")
    wandb_env = {"WANDB_BASE_URL": wandb_server.base_url, "WANDB_API_KEY": API_KEY, "WANDB_ENTITY": "team"}
    async with DiscordStandIn(token=TOKEN) as standin:
        code, out = await doctor(
            tmp_path, standin, WANDB_PROJECT="proj", ADJUTANT_EXPERIMENT_SCRIPT=str(script), **wandb_env
        )
    assert code == 0, out
    assert "ok: discord token: logged in as adjutant-bot" in out
    assert "ok: message content intent: enabled" in out
    assert "ok: channel: #general in Stand-in ML Lab is writable" in out
    assert "ok: w&b project: team/proj: 1 run(s)" in out
    assert f"client_id={standin.application_id}" in out and "scope=bot+applications.commands" in out
    assert "configuration OK" in out
    assert TOKEN not in out


async def test_check_names_each_permission_the_bot_lacks_in_a_channel(tmp_path: Path, script: Path) -> None:
    """The bot's effective permissions in the configured channel (roles and the channel's overwrites): a withheld
    Pin Messages and Create Public Threads are each named, with what breaks and the fix."""
    async with DiscordStandIn(token=TOKEN) as standin:
        standin.withhold("general", "pin_messages", "create_public_threads")
        code, out = await doctor(tmp_path, standin, ADJUTANT_EXPERIMENT_SCRIPT=str(script))
    assert code == 1, out
    assert "#general in Stand-in ML Lab found, but the bot lacks:" in out
    assert "Pin Messages ($status pin cannot pin the status card)" in out
    assert "Create Public Threads (a job gets no thread)" in out
    assert "Send Messages (" not in out, "only what is missing"
    assert "Edit Channel → Permissions" in out


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("bad token", "Discord rejected DISCORD_TOKEN"),
        ("no intent", "message content intent: not enabled"),
        ("no channel", "no text channel 'nope'"),
        ("bad w&b key", "did not accept the key"),
        ("no shebang", "has no shebang line"),
    ],
)
async def test_check_finds_each_problem(tmp_path: Path, wandb_server, case: str, expected: str) -> None:
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n" if case != "no shebang" else "echo hi\n")
    script.chmod(0o755)
    key = "local-" + "x" * 40 if case == "bad w&b key" else None
    from tests.standins.wandb_standin import API_KEY

    env = {
        "WANDB_BASE_URL": wandb_server.base_url,
        "WANDB_API_KEY": key or API_KEY,
        "WANDB_PROJECT": "proj",
        "WANDB_ENTITY": "team",
        "ADJUTANT_EXPERIMENT_SCRIPT": str(script),
        "ADJUTANT_WANDB_TIMEOUT": "5",
    }
    if case == "no channel":
        env["ADJUTANT_CHANNEL"] = "nope"
    async with DiscordStandIn(token=TOKEN, allow_message_content=case != "no intent") as standin:
        if case == "bad token":
            env["DISCORD_TOKEN"] = "not-the-token"
        code, out = await doctor(tmp_path, standin, **env)
    assert code == 1, out
    assert expected in out, out
    assert "Traceback" not in out


async def test_check_discord_unreachable_is_a_problem_not_a_hang(tmp_path: Path) -> None:
    async with DiscordStandIn(token=TOKEN) as standin:
        pass  # stopped: its port now refuses connections
    code, out = await doctor(tmp_path, standin)
    assert code == 1
    assert "problem: discord token: Discord not reachable" in out


async def test_invite_url(tmp_path: Path) -> None:
    async with DiscordStandIn(token=TOKEN) as standin:
        code, out = await doctor(tmp_path, standin, "--invite-url")
    assert code == 0, out
    assert out.strip().startswith("https://discord.com/oauth2/authorize?client_id=")
    assert str(standin.application_id) in out
    granted = discord.Permissions(int(parse_qs(urlparse(out.strip()).query)["permissions"][0]))
    for attribute, _, _ in CHANNEL_NEEDS:  # every permission Adjutant uses in a channel is asked for
        assert getattr(granted, attribute), attribute


def test_check_script_not_executable(tmp_path: Path) -> None:
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o644)
    result = run_cli("--check", env={"ADJUTANT_EXPERIMENT_SCRIPT": str(script)}, cwd=tmp_path)
    assert result.returncode == 2
    assert "chmod +x" in result.stdout


def test_env_file_option(tmp_path: Path) -> None:
    missing = run_cli("--check", "--env-file", str(tmp_path / "nope.env"), env={}, cwd=tmp_path)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    custom = tmp_path / "custom.env"
    custom.write_text("ADJUTANT_CHANNEL=lab\nADJUTANT_PREFIX=!\n")
    result = run_cli("--check", "--env-file", str(custom), env={"ADJUTANT_CHANNEL": "from-env"}, cwd=tmp_path)
    assert "channel: from-env" in result.stdout, "the environment wins over the file"
    assert "prefix: !" in result.stdout, "the file was read"


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


async def test_check_wandb_unreachable_is_a_problem_not_a_hang(tmp_path: Path) -> None:
    from tests.standins.wandb_standin import API_KEY

    async with DiscordStandIn(token=TOKEN) as standin:
        code, out = await doctor(
            tmp_path,
            standin,
            WANDB_BASE_URL="http://127.0.0.1:9",  # the discard port: nothing listens
            WANDB_API_KEY=API_KEY,
            WANDB_PROJECT="proj",
            ADJUTANT_WANDB_TIMEOUT="5",
        )
    assert code == 1
    assert "problem: w&b key: W&B at http://127.0.0.1:9 did not accept the key or did not answer" in out


async def test_sync_registers_every_command_against_the_strict_stand_in(tmp_path: Path, wandb_server, script) -> None:
    """``python -m adjutant --sync`` with W&B and launching on: Discord (the stand-in, which refuses what Discord
    refuses) accepts every slash command and context menu; the bot keeps running and stops cleanly."""
    async with DiscordStandIn(token=TOKEN) as standin:
        env = subprocess_env(
            standin,
            {
                "ADJUTANT_STATE_DIR": str(tmp_path / "state"),
                "HOME": str(tmp_path),
                "ADJUTANT_GUILD_ID": str(standin.guild_id),
                "ADJUTANT_EXPERIMENT_SCRIPT": str(script),
                "WANDB_BASE_URL": wandb_server.base_url,
                "WANDB_API_KEY": "k" * 40,
                "WANDB_ENTITY": "team",
                "WANDB_PROJECT": "proj",
            },
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "adjutant", "--sync", cwd=tmp_path, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        try:
            guild = str(standin.guild_id)
            for _ in range(600):
                if guild in standin.synced or process.returncode is not None:
                    break
                await asyncio.sleep(0.05)
            assert guild in standin.synced, "the commands were not registered"
            assert standin.unexpected_refusals() == []
        finally:
            process.send_signal(signal.SIGTERM)
            output, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, output.decode()
    assert "Traceback" not in output.decode()
    names = {c["name"] for c in standin.synced[guild]}
    expected = {"hello", "experiment", "sweep", "rerun", "cancel", "jobs", "logs", "gpus", "usage", "audit", "Rerun"}
    expected |= {"runs", "run", "best", "plot", "watch", "watches", "unwatch", "subscribe", "compare", "status"}
    assert expected <= names, expected - names


def test_a_projects_file_added_to_the_quickstart_env_is_refused_naming_what_to_remove(tmp_path: Path) -> None:
    """The README's Quickstart .env (.env.example copied, token and W&B project filled in, step 5's script line
    appended), then a projects file added: refused for what the user set, each with its value, where it was set and
    the [[projects]] line that takes its place; never for a default of .env.example (ADJUTANT_CHANNEL=general).
    Without those lines the same .env is accepted."""
    script = tmp_path / "run_experiment.sh"
    script.write_text('#!/bin/sh\necho "$1"\n')
    script.chmod(0o755)
    projects = tmp_path / "projects.toml"
    projects.write_text('[[projects]]\nproject = "mnist"\nchannel = "general"\n')
    text = (Path(__file__).parent.parent / ".env.example").read_text()
    text = text.replace("\nDISCORD_TOKEN=\n", f"\nDISCORD_TOKEN={TOKEN}\n")
    text = text.replace("\nWANDB_PROJECT=\n", "\nWANDB_PROJECT=mnist\n")
    text += f"ADJUTANT_EXPERIMENT_SCRIPT={script}\nADJUTANT_CONFIG={projects}\n"
    (tmp_path / ".env").write_text(text)
    refusal = (
        "ADJUTANT_CONFIG and WANDB_PROJECT, ADJUTANT_EXPERIMENT_SCRIPT are both set: the projects file replaces the"
        " one-project variables. Remove WANDB_PROJECT=mnist (from "
    )
    table = f'write project = "mnist" and experiment_script = "{script}" in a [[projects]] table of {projects}'
    lines = text.splitlines()
    env_file = tmp_path / ".env"
    project_line = lines.index("WANDB_PROJECT=mnist") + 1
    script_line = lines.index(f"ADJUTANT_EXPERIMENT_SCRIPT={script}") + 1
    checked = run_cli("--check", env={}, cwd=tmp_path)
    assert checked.returncode == 2
    assert refusal in checked.stdout and f" and ADJUTANT_EXPERIMENT_SCRIPT={script} (from " in checked.stdout
    assert f"Remove WANDB_PROJECT=mnist (from line {project_line} of {env_file})" in checked.stdout
    assert f"ADJUTANT_EXPERIMENT_SCRIPT={script} (from line {script_line} of {env_file})" in checked.stdout
    assert table in checked.stdout
    started = run_cli(env={}, cwd=tmp_path)
    assert started.returncode == 2
    assert f"configuration error: {refusal}" in started.stderr and table in started.stderr
    assert "ADJUTANT_CHANNEL" not in checked.stdout + started.stderr, ".env.example's default is commented out"
    from_env = run_cli("--check", env={"ADJUTANT_CHANNEL": "lab"}, cwd=tmp_path)
    assert "ADJUTANT_CHANNEL=lab (from the environment)" in from_env.stdout
    kept = [
        line
        for line in text.splitlines()
        if line not in ("WANDB_PROJECT=mnist", f"ADJUTANT_EXPERIMENT_SCRIPT={script}")
    ]
    (tmp_path / ".env").write_text("\n".join(kept) + "\n")
    fixed = run_cli("--check", env={}, cwd=tmp_path)
    assert "both set" not in fixed.stdout and "configuration error" not in fixed.stdout + fixed.stderr
    assert "mnist" in fixed.stdout, fixed.stdout
