"""A remote job gets an allow-listed environment, never the bot's whole one (issue 21, item 4).

The bot's environment holds planted secrets (an AWS key, a W&B key, the Discord token, wandb's service socket) and
the variables a script needs only on this machine (PATH, HOME). A Ray job's ``runtime_env.env_vars`` and a Slurm
job's ``sbatch --export`` carry only the job's ids, its W&B run variables and what ``ADJUTANT_JOB_ENV`` names. The Ray
half runs against a real Ray head in a loopback-only network namespace (``tests/ray/test_job_env.py``, started from
here); the Slurm half against the real single-node Slurm is in ``tests/cogs/test_slurm.py``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from adjutant.jobs import Job, JobStore, child_environment
from adjutant.launchers import JOB_VARIABLES, job_environment
from adjutant.launchers.slurm import SlurmLauncher
from adjutant.settings import Settings
from tests.test_ray import run_ray_tests
from tests.test_scheduler import request

TOKEN = "discord-token-planted-0123456789"
BOT_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/home/bot",
    "LANG": "C.UTF-8",
    "HF_HOME": "/data/hf",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-planted",
    "WANDB_API_KEY": "wandb-key-planted-0123456789abcdef",
    "DISCORD_TOKEN": TOKEN,
    "MY_BOT_TOKEN": TOKEN,  # the token under another name
    "WANDB_SERVICE": "3-12345-unix-/tmp/wandb-service.sock",
    "_WANDB_STARTUP_DEBUG": "x",
    "ADJUTANT_RAY_ADDRESS": "http://ray-head:8265",  # the bot's own settings are not the job's
    "ADJUTANT_GPUS": "0,1",
    "CUDA_VISIBLE_DEVICES": "0,1",
    "WANDB_BASE_URL": "https://wandb.example",
    "WANDB_TAGS": "team-a",
}
PLANTED = ("aws-secret-planted", "wandb-key-planted-0123456789abcdef", TOKEN, "wandb-service.sock")


@pytest.fixture
def job(tmp_path: Path) -> Job:
    store = JobStore(tmp_path / "adjutant.sqlite3")
    try:
        return store.add(dataclasses.replace(request(), project="vision", entity="team"), tmp_path)
    finally:
        store.close()


def the_jobs_environment(job: Job) -> dict[str, str]:
    """What the scheduler hands a launcher: the bot's environment, scrubbed of the token, plus the job's ids."""
    return child_environment(BOT_ENV, job, secrets_to_drop=(TOKEN,), entity="team", project="vision")


def test_a_remote_job_gets_its_ids_and_w_and_b_run_variables_and_nothing_else(job: Job) -> None:
    env = the_jobs_environment(job)
    assert env["AWS_SECRET_ACCESS_KEY"] and env["HOME"], "a local job still gets the scrubbed bot environment"
    remote = job_environment(env, job)
    assert set(remote) == set(JOB_VARIABLES)
    assert remote["ADJUTANT_JOB_ID"] == job.id and remote["WANDB_RUN_ID"] == job.wandb_run_id
    assert remote["WANDB_PROJECT"] == "vision" and remote["WANDB_ENTITY"] == "team"
    assert remote["WANDB_BASE_URL"] == "https://wandb.example" and remote["WANDB_RESUME"] == "allow"
    assert remote["WANDB_TAGS"] == f"team-a,adjutant,job-{job.id}"
    assert not any(secret in value for value in remote.values() for secret in PLANTED)


def test_named_variables_are_added_and_the_w_and_b_key_goes_only_when_named(job: Job) -> None:
    env = the_jobs_environment(job)
    assert "WANDB_API_KEY" not in job_environment(env, job, ("HF_HOME",))
    remote = job_environment(env, job, ("HF_HOME", "WANDB_API_KEY", "NOT_SET_ANYWHERE"))
    assert set(remote) == {*JOB_VARIABLES, "HF_HOME", "WANDB_API_KEY"}
    assert remote["HF_HOME"] == "/data/hf" and remote["WANDB_API_KEY"] == BOT_ENV["WANDB_API_KEY"]


def test_the_token_and_wandbs_socket_never_go_even_when_named(job: Job) -> None:
    named = ("DISCORD_TOKEN", "MY_BOT_TOKEN", "WANDB_SERVICE", "_WANDB_STARTUP_DEBUG")
    assert set(job_environment(the_jobs_environment(job), job, named)) == set(JOB_VARIABLES)
    # even from an environment that was not scrubbed first
    assert not {"DISCORD_TOKEN", "WANDB_SERVICE", "_WANDB_STARTUP_DEBUG"} & set(job_environment(BOT_ENV, job, named))


def test_gpu_variables_go_only_when_adjutant_handed_out_the_gpus(job: Job) -> None:
    env = the_jobs_environment(job)
    assert not {"CUDA_VISIBLE_DEVICES", "ADJUTANT_GPUS"} & set(job_environment(env, job)), "the bot's own GPUs"
    given = dataclasses.replace(job, gpu_ids=(1,))
    env = {**env, "CUDA_VISIBLE_DEVICES": "1", "ADJUTANT_GPUS": "1"}  # as the scheduler sets them
    remote = job_environment(env, given)
    assert remote["CUDA_VISIBLE_DEVICES"] == "1" and remote["ADJUTANT_GPUS"] == "1"


def test_sbatch_exports_exactly_the_allow_list_by_name(job: Job) -> None:
    """``--export=<names>``: the values reach sbatch through its own environment (a comma in WANDB_TAGS cannot split
    the list), and it comes after ADJUTANT_SLURM_ARGS, whose ``--export=ALL`` would otherwise win."""
    settings = Settings.from_env({"ADJUTANT_JOB_ENV": "HF_HOME", "ADJUTANT_SLURM_ARGS": "--export=ALL --mem=1G"})
    launcher = SlurmLauncher(settings, "")
    argv = launcher.sbatch_argv(job, the_jobs_environment(job))
    exports = [a for a in argv if a.startswith("--export=")]
    assert exports[-1] == "--export=" + ",".join(sorted({*JOB_VARIABLES, "HF_HOME"}))
    assert argv.index(exports[-1]) > argv.index("--export=ALL")
    assert argv[-2:] == [job.script, job.params_text]
    assert not any(secret in arg for arg in argv for secret in PLANTED)
    assert launcher.sbatch_argv(job)[-3] == "--export=NONE", "no environment: nothing exported, never ALL"


def test_a_ray_job_record_holds_only_the_allow_list_read_back_from_a_real_ray_head() -> None:
    """tests/ray/test_job_env.py, inside a loopback-only network namespace with its own Ray head."""
    passed = run_ray_tests("tests/ray/test_job_env.py")
    assert passed >= 2
