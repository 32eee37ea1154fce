"""Fixtures for interop tests: fresh loopback addresses, ports, and daemons that always stop.

Why fixtures and not per-test setup: a daemon left running after a failed
test would hold its port and confuse the next test; the ``spawn`` fixture
stops every daemon it started, in reverse order, whatever the test did.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from daemons import Daemon, free_port

D = TypeVar("D", bound=Daemon)

# 127.0.0.100-127.0.0.249: the capture tool uses .21-.32, other suites the low numbers.
_HOSTS = itertools.cycle(range(100, 250))


@pytest.fixture
def loopback() -> Callable[[], str]:
    """Call to get a loopback address no other speaker of this session is using right now."""
    return lambda: f"127.0.0.{next(_HOSTS)}"


@pytest.fixture
def port() -> Callable[[], int]:
    """Call to get a currently free TCP port."""
    return free_port


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``spawn(GoBGP, address=..., port=..., ...)`` builds, starts and later stops a daemon.

    The daemon's work directory is a fresh subdirectory of the test's
    ``tmp_path``; its log stays there for post-mortem.
    """
    started: list[Daemon] = []

    def _spawn(cls: type[D], **kwargs: Any) -> D:
        workdir = tmp_path / f"{cls.name}-{len(started)}"
        daemon = cls(workdir=workdir, **kwargs)
        started.append(daemon)
        daemon.start()
        return daemon

    yield _spawn
    for daemon in reversed(started):
        daemon.stop()
