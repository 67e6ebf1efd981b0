"""What Ray keeps of a job's environment, read back through the Jobs API as anyone who reaches it could: only the
allow-list (issue 21, item 4). Run by tests/faults/test_job_env.py inside a loopback-only namespace with a real Ray
head; the bot's environment holds a planted AWS key and W&B key."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from adjutant.launchers import JOB_VARIABLES
from tests.cogs.conftest import TOKEN
from tests.cogs.test_experiments import launch, received, wait_report
from tests.ray.test_ray_launcher import ray_env
from tests.standins.discord_standin import DiscordStandIn

AWS_KEY = "aws-secret-planted-wJalrXUtnFEMI"
WANDB_KEY = "wandb-key-planted-0123456789abcdef0123"
#: Always set by Adjutant for a job (WANDB_ENTITY/PROJECT/BASE_URL only when known).
ALWAYS = {"ADJUTANT_JOB_ID", "WANDB_RUN_ID", "WANDB_RESUME", "WANDB_RUN_GROUP", "WANDB_TAGS"}


@pytest.fixture
def planted(monkeypatch: pytest.MonkeyPatch, out_dir: Path) -> None:
    """The bot's environment: secrets, a variable a job may be given by name, a W&B server address."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_KEY)
    monkeypatch.setenv("WANDB_API_KEY", WANDB_KEY)
    monkeypatch.setenv("HF_HOME", "/data/hf-cache")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:1")


def ray_record(address: str, job_id: str) -> Any:
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(address)
    listed = [j for j in client.list_jobs() if j.submission_id == job_id]
    assert len(listed) == 1
    info = client.get_job_info(job_id)
    assert info.runtime_env == listed[0].runtime_env
    return listed[0]


def expected(*named: str) -> set[str]:
    known = {name for name in ("WANDB_ENTITY", "WANDB_PROJECT", "WANDB_BASE_URL") if os.environ.get(name)}
    assert ALWAYS | known <= set(JOB_VARIABLES)
    return ALWAYS | known | set(named)


async def test_ray_keeps_only_the_allow_list_and_the_w_and_b_key_stays_home(
    start_adjutant, discord_standin: DiscordStandIn, out_dir: Path, ray_head: str, planted: None
) -> None:
    async with start_adjutant(ray_env(ray_head, ADJUTANT_JOB_ENV="ADJUTANT_TEST_OUT,HF_HOME")):
        job_id = await launch(discord_standin, '{"epochs": 1}')
        done = await wait_report(discord_standin, job_id, timeout=90)
    assert f"Experiment {job_id} succeeded" in done["embeds"][0]["title"]
    record = ray_record(ray_head, job_id)
    env_vars = record.runtime_env["env_vars"]
    assert set(env_vars) == expected("ADJUTANT_TEST_OUT", "HF_HOME"), sorted(env_vars)
    assert env_vars["ADJUTANT_JOB_ID"] == job_id and env_vars["HF_HOME"] == "/data/hf-cache"
    assert env_vars["WANDB_BASE_URL"] == "http://127.0.0.1:1"
    everything = str(record)
    for secret in (AWS_KEY, WANDB_KEY, TOKEN):
        assert secret not in everything
    got = received(out_dir, job_id)["env"]  # what the script saw: what it needs, no secret
    assert got["ADJUTANT_JOB_ID"] == job_id and got["WANDB_RUN_ID"] == env_vars["WANDB_RUN_ID"]
    assert got["HF_HOME"] == "/data/hf-cache" and got["ADJUTANT_TEST_OUT"] == str(out_dir)
    assert "AWS_SECRET_ACCESS_KEY" not in got and "WANDB_API_KEY" not in got and "DISCORD_TOKEN" not in got
    assert not {AWS_KEY, WANDB_KEY, TOKEN} & set(got.values())


async def test_the_w_and_b_key_goes_when_adjutant_job_env_names_it(
    start_adjutant, discord_standin: DiscordStandIn, out_dir: Path, ray_head: str, planted: None
) -> None:
    async with start_adjutant(ray_env(ray_head, ADJUTANT_JOB_ENV="ADJUTANT_TEST_OUT, WANDB_API_KEY")):
        job_id = await launch(discord_standin, '{"epochs": 1}')
        done = await wait_report(discord_standin, job_id, timeout=90)
    assert f"Experiment {job_id} succeeded" in done["embeds"][0]["title"]
    env_vars = ray_record(ray_head, job_id).runtime_env["env_vars"]
    assert set(env_vars) == expected("ADJUTANT_TEST_OUT", "WANDB_API_KEY"), sorted(env_vars)
    assert env_vars["WANDB_API_KEY"] == WANDB_KEY and AWS_KEY not in str(env_vars)
    got = received(out_dir, job_id)["env"]
    assert got["WANDB_API_KEY"] == WANDB_KEY and "AWS_SECRET_ACCESS_KEY" not in got
