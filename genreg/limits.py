"""How much memory a command may still ask for, so that an absurd size is refused before it is allocated.

A command that allocates in proportion to a number the user gives (``sample -n``,
``extend --add``, ...) estimates what it needs and calls :func:`check_memory`
first: the request is refused, naming the limit, instead of failing deep inside
torch, or being killed, after the work has begun.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

from genreg.errors import GenregError


def available_memory() -> tuple[int, str]:
    """Bytes this process can still allocate, and what sets that limit.

    The least of: the machine's available memory (``MemAvailable`` of /proc/meminfo,
    else free pages), the room left under this process's address-space limit
    (``ulimit -v``), and the room left in its control group (cgroup v2 ``memory.max``).
    """
    limits = [(_machine_available(), "available on this machine")]
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        limits.append((soft - _status_bytes("VmSize"), f"left under this process's limit (ulimit -v) of {gb(soft)}"))
    cgroup = _cgroup_room()
    if cgroup is not None:
        limits.append(cgroup)
    bytes_, what = min(limits)
    return max(bytes_, 0), what


def check_memory(needed: int, what: str, advice: str, error: type[GenregError]) -> None:
    """Raise ``error`` if ``needed`` bytes (an estimate for ``what``) exceed :func:`available_memory`.

    ``what`` names the request (``sample -n 1000000000: 10,000,000,000 images of 1x28x28``), ``advice``
    what to ask for instead.
    """
    room, limit = available_memory()
    if needed > room:
        raise error(f"{what} needs about {gb(needed)} of memory, but only {gb(room)} is {limit}; {advice}")


def gb(n: int | float) -> str:
    """``n`` bytes as ``1.5 GB`` (``12.0 MB``, ``3.2 TB``, ``288 bytes``: the unit that reads best)."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:,.0f} bytes"


def _machine_available() -> int:
    meminfo = _read_fields(Path("/proc/meminfo"))
    if "MemAvailable" in meminfo:
        return meminfo["MemAvailable"]
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _status_bytes(field: str) -> int:
    """A field of /proc/self/status in bytes (0 where there is none)."""
    return _read_fields(Path("/proc/self/status")).get(field, 0)


def _read_fields(path: Path) -> dict[str, int]:
    """``Name:   123 kB`` lines as ``{Name: bytes}``; empty where the file cannot be read (not Linux)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    fields = {}
    for line in lines:
        name, _, value = line.partition(":")
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB" and parts[0].isdecimal():
            fields[name] = int(parts[0]) * 1024
    return fields


def _cgroup_room() -> tuple[int, str] | None:
    """Bytes left under this process's cgroup v2 memory limit, if it has one."""
    try:
        relative = Path("/proc/self/cgroup").read_text().strip().rpartition("::")[2]
        folder = Path("/sys/fs/cgroup") / relative.lstrip("/")
        limit = (folder / "memory.max").read_text().strip()
        used = int((folder / "memory.current").read_text())
    except (OSError, ValueError):
        return None
    if not limit.isdecimal():  # "max": no limit
        return None
    return int(limit) - used, f"left under this process's memory limit (cgroup) of {gb(int(limit))}"
