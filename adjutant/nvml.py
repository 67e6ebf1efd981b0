"""What NVML says about this machine's GPUs: the one module that calls ``pynvml`` (from ``nvidia-ml-py``, the
``adjutant-discord[gpu]`` extra).

Blocking (the driver is asked synchronously): callers run :func:`read_gpus` in a thread. Everything above it works
on :class:`GpuReading` values, so rendering and scheduling are tested with recorded readings.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

_INIT = threading.Lock()
_started = False


class NvmlUnavailable(RuntimeError):
    """No readings: the library is not installed, or no NVIDIA driver or GPU answers. The message says which."""


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    used_mb: float
    #: Its process group (Adjutant's jobs each run in their own), or None when it cannot be read (another container).
    pgid: int | None


@dataclass(frozen=True)
class GpuReading:
    index: int
    name: str
    utilization: float | None  # percent
    memory_used_mb: float
    memory_total_mb: float
    temperature: float | None  # °C
    processes: tuple[GpuProcess, ...] = ()


def _pynvml() -> Any:
    try:
        import pynvml
    except ImportError:
        raise NvmlUnavailable(
            "ADJUTANT_GPUS=auto needs NVML's Python bindings: pip install 'adjutant-discord[gpu]'"
            " (or list the GPU ids, e.g. ADJUTANT_GPUS=0,1)"
        ) from None
    return pynvml


def _start(nvml: Any) -> None:
    global _started
    with _INIT:
        if _started:
            return
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as error:
            raise NvmlUnavailable(
                f"NVML did not start ({error}): this machine has no NVIDIA GPU or no NVIDIA driver is loaded;"
                " list the GPU ids instead (ADJUTANT_GPUS=0,1) or unset ADJUTANT_GPUS"
            ) from None
        _started = True


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def read_gpus() -> list[GpuReading]:
    """(blocking) One reading per GPU NVML sees, in index order. Raises :class:`NvmlUnavailable`."""
    nvml = _pynvml()
    _start(nvml)
    readings = []
    try:
        count = nvml.nvmlDeviceGetCount()
        for index in range(count):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            name = nvml.nvmlDeviceGetName(handle)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            try:
                utilization: float | None = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            except nvml.NVMLError:
                utilization = None
            try:
                temperature: float | None = float(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
            except nvml.NVMLError:
                temperature = None
            try:
                running = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
            except nvml.NVMLError:
                running = []
            processes = tuple(GpuProcess(p.pid, (p.usedGpuMemory or 0) / 2**20, _pgid(p.pid)) for p in running if p.pid)
            readings.append(
                GpuReading(
                    index=index,
                    name=name.decode() if isinstance(name, bytes) else str(name),
                    utilization=utilization,
                    memory_used_mb=memory.used / 2**20,
                    memory_total_mb=memory.total / 2**20,
                    temperature=temperature,
                    processes=processes,
                )
            )
    except nvml.NVMLError as error:
        raise NvmlUnavailable(f"NVML could not read the GPUs: {error}") from None
    return readings


def busy_elsewhere(readings: list[GpuReading], ours: set[int], busy_mb: float) -> set[int]:
    """GPUs that Adjutant did not hand out but whose memory is in use above ``busy_mb`` (someone else's work)."""
    return {r.index for r in readings if r.index not in ours and r.memory_used_mb > busy_mb}
