"""The container launcher's tests run against a real rootful Podman, with an image built here (no registry): the
root filesystem of Debian's ``busybox-static`` package, ``podman import``-ed under a name of this test process's
own, and removed afterwards, with every container these tests made.

Without Podman (or without root) the tests are skipped, saying why; with ``ADJUTANT_REQUIRE_PODMAN`` set (.ci/run
sets it) that is a failure instead. This machine's kind needs two things of Podman, which the tests configure as a
user would: a ``containers.conf`` with ``default_ulimits = []`` (``CONTAINERS_CONF``), and runc rather than crun
(``ADJUTANT_CONTAINER_ARGS=--runtime runc``, when runc is installed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent / "scripts" / "job.sh"
#: Where the downloaded busybox-static package is kept between runs (it is 1 MB; the download takes a second).
CACHE = Path(os.environ.get("ADJUTANT_CONTAINER_CACHE", "/var/tmp/adjutant-container-test"))
#: The busybox applets the job script uses.
APPLETS = ("sh", "echo", "printf", "env", "sleep", "dd", "cat", "true", "ls")


@dataclass(frozen=True)
class Podman:
    image: str
    conf: Path
    args: str

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "CONTAINERS_CONF": str(self.conf)}
        return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, check=False, env=env)

    def containers(self, label: str) -> list[str]:
        """Names of the containers (running or not) with ``label`` (``key=value``)."""
        listed = self.run("ps", "-a", "--filter", f"label={label}", "--format", "{{.Names}}")
        return listed.stdout.split()


def _unavailable(problem: str) -> None:
    if os.environ.get("ADJUTANT_REQUIRE_PODMAN"):
        pytest.fail(f"{problem} (ADJUTANT_REQUIRE_PODMAN is set)")
    pytest.skip(problem)


def _busybox_deb() -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    found = sorted(CACHE.glob("busybox-static_*.deb"))
    if found:
        return found[-1]
    fetched = subprocess.run(
        ["apt-get", "download", "busybox-static"], cwd=CACHE, capture_output=True, text=True, timeout=120, check=False
    )
    found = sorted(CACHE.glob("busybox-static_*.deb"))
    if fetched.returncode != 0 or not found:
        _unavailable(f"cannot download Debian's busybox-static: {(fetched.stderr or fetched.stdout).strip()[-300:]}")
    return found[-1]


def _remove_leftovers(engine: Podman) -> None:
    """The images and containers of earlier test processes that were killed before their clean-up (their tag and
    label hold the process id)."""
    images = engine.run("images", "--format", "{{.Repository}}:{{.Tag}}", "localhost/adjutant-test-busybox")
    for image in images.stdout.split():
        pid = image.rpartition(":")[2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            stale = engine.containers(f"adjutant.test={pid}")
            if stale:
                engine.run("rm", "-f", *stale)
            engine.run("rmi", "-f", image)


@pytest.fixture(scope="session")
def podman() -> Iterator[Podman]:
    """A rootful Podman and a busybox image of this process's own (removed at the end, with the tests'
    containers)."""
    if shutil.which("podman") is None:
        _unavailable("Podman is not installed (apt-get install podman runc)")
    if os.geteuid() != 0:
        _unavailable("the container tests need rootful Podman (run as root)")
    with tempfile.TemporaryDirectory(prefix="adjutant-podman-") as folder:
        work = Path(folder)
        conf = work / "containers.conf"
        conf.write_text("[containers]\ndefault_ulimits = []\n")
        _remove_leftovers(Podman("", conf, ""))
        root = work / "root"
        unpacked = subprocess.run(
            ["dpkg", "-x", str(_busybox_deb()), str(root)], capture_output=True, text=True, check=False
        )
        if unpacked.returncode != 0:
            _unavailable(f"cannot unpack busybox-static: {unpacked.stderr.strip()[-300:]}")
        for applet in APPLETS:
            (root / "bin" / applet).symlink_to("busybox")
        for empty in ("tmp", "proc", "sys", "dev", "etc"):
            (root / empty).mkdir(exist_ok=True)
        with tarfile.open(work / "rootfs.tar", "w") as tar:
            tar.add(root, arcname=".")
        tag = f"localhost/adjutant-test-busybox:{os.getpid()}"
        args = "--runtime runc" if shutil.which("runc") else ""
        engine = Podman(tag, conf, args)
        imported = engine.run("import", "-q", str(work / "rootfs.tar"), tag)
        if imported.returncode != 0:
            _unavailable(f"podman import failed: {imported.stderr.strip()[-300:]}")
        try:
            yield engine
        finally:
            leftovers = engine.containers(f"adjutant.test={os.getpid()}")
            mine = engine.run("ps", "-a", "--format", "{{.Names}} {{.Image}}").stdout.splitlines()
            leftovers += [line.split()[0] for line in mine if line.endswith(f" {tag}")]
            if leftovers:
                engine.run("rm", "-f", *sorted(set(leftovers)))
            engine.run("rmi", "-f", tag)


@pytest.fixture
def container_env(podman: Podman, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The bot's settings for container jobs of the test image, and the runtime's configuration in the
    environment (the runtime gets it from the bot's)."""
    monkeypatch.setenv("CONTAINERS_CONF", str(podman.conf))
    return {
        "ADJUTANT_EXPERIMENT_SCRIPT": str(SCRIPT),
        "ADJUTANT_LAUNCHER": "container",
        "ADJUTANT_CONTAINER_RUNTIME": "podman",
        "ADJUTANT_CONTAINER_IMAGE": podman.image,
        "ADJUTANT_CONTAINER_NETWORK": "none",
        "ADJUTANT_CONTAINER_ARGS": f"{podman.args} --label adjutant.test={os.getpid()}".strip(),
        "ADJUTANT_CANCEL_GRACE_SECONDS": "2",
    }
