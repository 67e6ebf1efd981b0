"""Faults of the state folder: a second Adjutant on the same folder, and a damaged or unusable database.
The second process refuses to start (exit 2, naming the folder and the other pid); a damaged database
stops startup with its path and the fix, and is never changed."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from adjutant.settings import Settings
from tests.conftest import eventually, subprocess_env
from tests.standins.discord_standin import DiscordStandIn


async def start_process(standin: DiscordStandIn, state: Path, tmp_path: Path) -> asyncio.subprocess.Process:
    env = subprocess_env(standin, {"ADJUTANT_STATE_DIR": str(state), "HOME": str(tmp_path)})
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "adjutant", cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


async def test_a_second_adjutant_on_the_same_folder_refuses_to_start(
    discord_standin: DiscordStandIn, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    first = await start_process(discord_standin, state, tmp_path)
    try:
        await eventually(lambda: len(discord_standin.identifies) == 1, timeout=20)
        second = await start_process(discord_standin, state, tmp_path)
        out, err = await asyncio.wait_for(second.communicate(), 30)
        assert second.returncode == 2
        text = err.decode()
        assert str(state) in text and f"pid {first.pid}" in text and "ADJUTANT_STATE_DIR" in text
        assert "Traceback" not in text
        assert len(discord_standin.identifies) == 1, "the second never connected"
        check = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "adjutant",
            "--check",
            cwd=tmp_path,
            env=subprocess_env(discord_standin, {"ADJUTANT_STATE_DIR": str(state), "HOME": str(tmp_path)}),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(check.communicate(), 60)
        assert check.returncode == 2
        assert f"pid {first.pid}" in out.decode()
    finally:
        first.terminate()
        await first.wait()


async def test_two_bots_in_one_process_cannot_share_a_folder(tmp_path: Path) -> None:
    # Imported here: loading the extension elsewhere in the run re-imports adjutant.* (new class objects).
    from adjutant.services import Services
    from adjutant.state import StateError

    settings = Settings.from_env({"ADJUTANT_STATE_DIR": str(tmp_path / "state")})
    services = await Services.open(settings)
    with pytest.raises(StateError, match="already using the state folder"):
        await Services.open(settings)
    await services.close_if_unused()
    again = await Services.open(settings)  # released: usable again
    await again.close_if_unused()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "folder"])
def test_a_damaged_database_stops_startup_with_path_and_fix(tmp_path: Path, damage: str) -> None:
    state = tmp_path / "state"
    state.mkdir()
    database = state / "adjutant.sqlite3"
    if damage == "garbage":
        database.write_bytes(b"this is not a database, it is a shopping list\n" * 100)
    elif damage == "truncated":
        import sqlite3

        with sqlite3.connect(database) as db:
            db.execute("CREATE TABLE t (x TEXT)")
            db.executemany("INSERT INTO t VALUES (?)", [("x" * 500,)] * 200)
        data = database.read_bytes()
        database.write_bytes(data[:100] + b"\xff" * 4000 + data[4100:])  # header kept, pages scribbled over
    else:
        database.mkdir()
    before = hashlib.sha256(database.read_bytes()).hexdigest() if database.is_file() else None
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ADJUTANT_STATE_DIR": str(state), "DISCORD_TOKEN": "x.y.z"}
    result = subprocess.run(
        [sys.executable, "-m", "adjutant"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert str(database) in result.stderr and "move it aside" in result.stderr
    assert "Traceback" not in result.stderr
    check = subprocess.run(
        [sys.executable, "-m", "adjutant", "--check"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 2 and str(database) in check.stdout
    if before is not None:
        assert hashlib.sha256(database.read_bytes()).hexdigest() == before, "never changed"
