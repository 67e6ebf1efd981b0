"""Services: what is built when (a start builds only what answering needs; the rest once, on first use)."""

from __future__ import annotations

from pathlib import Path


async def test_sweeps_are_built_on_first_use_once_on_the_shared_database(tmp_path: Path) -> None:
    # Imported here: loading the extension elsewhere in the run re-imports adjutant.* (new class objects).
    from adjutant.services import Services
    from adjutant.settings import Settings

    env = {"ADJUTANT_STATE_DIR": str(tmp_path / "state"), "ADJUTANT_POLL_SECONDS": "45"}
    services = await Services.open(Settings.from_env(env))
    try:
        assert "sweeps" not in vars(services)  # not built by open()
        sweeps = services.sweeps
        assert services.sweeps is sweeps  # built once: every caller shares it
        assert sweeps.store.database is services.database and sweeps.scheduler is services.scheduler
        assert sweeps.poll_seconds == 45 and sweeps.progress_of == services.progress_of
    finally:
        await services.close_if_unused()
