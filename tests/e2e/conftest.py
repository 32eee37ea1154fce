"""Fixtures of the end-to-end suite.

``main_lab`` is the lab of ``labs/main.yaml`` (three hosts, a vpe route
reflector, tenants for every requirement row), built once per dataplane
driver (userspace, then ebpf: every test using it runs against both) under a
unique prefix when the first test asks for it, and always removed
at the end of the session, also when tests fail. Tests only read its state
or send bounded traffic through it; counters are compared as deltas.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2e_lab import DRIVERS, RunningLab, netns, start_lab


@pytest.fixture(scope="session", params=DRIVERS)
def main_lab(request: pytest.FixtureRequest) -> Iterator[RunningLab]:
    """The main lab, once per dataplane driver (tests run against each in turn)."""
    why = netns.ip_available()
    if why is not None:
        pytest.skip(f"e2e tests need root and `ip netns`: {why}")
    lab = start_lab("main", driver=request.param)
    try:
        # the hub of hub-and-spoke (R4.5) is a router: it forwards, and sends
        # no redirects for the packets it hairpins back through its vPE
        lab.run("hub", "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.send_redirects=0",
                "net.ipv4.conf.eth0.send_redirects=0", check=True)
        yield lab
    finally:
        lab.teardown()
