"""Tests genreg/limits.py: how much memory a command may still ask for, and the refusal that names the limit."""

from __future__ import annotations

import resource

import pytest

from genreg import limits
from genreg.errors import UsageError


def test_the_machine_bounds_what_is_available() -> None:
    room, what = limits.available_memory()
    assert 0 < room <= limits._machine_available()
    assert what


def test_an_address_space_limit_is_named_when_it_is_the_lowest(monkeypatch: pytest.MonkeyPatch) -> None:
    """``ulimit -v 6000000``: the process may use 6 GB of address space, less what it already maps."""
    monkeypatch.setattr(resource, "getrlimit", lambda which: (6 * 10**9, resource.RLIM_INFINITY))
    monkeypatch.setattr(limits, "_machine_available", lambda: 10**12)
    monkeypatch.setattr(limits, "_cgroup_room", lambda: None)
    # what the process maps already; fixed, because another thread (a test's torch pool) may map more meanwhile
    monkeypatch.setattr(limits, "_status_bytes", lambda key: 10**9 if key == "VmSize" else 0)
    room, what = limits.available_memory()
    assert room == 5 * 10**9
    assert what == "left under this process's limit (ulimit -v) of 6.0 GB"


def test_check_memory_refuses_naming_request_limit_and_advice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "available_memory", lambda: (2 * 10**9, "available on this machine"))
    limits.check_memory(10**9, "a small request", "ask for less.", UsageError)  # fits: nothing happens
    with pytest.raises(UsageError) as caught:
        limits.check_memory(3 * 10**12, "sample -n 1000000", "ask for fewer images.", UsageError)
    assert str(caught.value) == (
        "sample -n 1000000 needs about 3.0 TB of memory, but only 2.0 GB is available on this machine; "
        "ask for fewer images."
    )


@pytest.mark.parametrize(
    ("n", "text"), [(288, "288 bytes"), (12_345_678, "12.3 MB"), (4.5e9, "4.5 GB"), (2.06e15, "2,060.0 TB")]
)
def test_sizes_are_written_in_the_unit_that_reads_best(n: float, text: str) -> None:
    assert limits.gb(n) == text
