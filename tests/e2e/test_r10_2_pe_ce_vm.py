"""R10.2 (option A's general form): a VM announces its own routes into its VPN over PE-CE BGP.

The VM ce1 runs BIRD, a real BGP daemon, and peers over eBGP (IPv4 and IPv6 unicast, one
session each) with its gateway addresses; h1's VRF red has it as a neighbor reached
through the VM's port (``via = "port"``, tests/e2e/labs/pe_ce.yaml): the forwarder carries
the sessions to h1's agent. ce1's prefixes become VPN routes; red2 on h2 reaches addresses
inside them, and ce1 learns the VPN's routes with our AS in their path. Both drivers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from e2e_lab import DRIVERS, E2E, Bird, RunningLab, start_lab

pytestmark = [*E2E, pytest.mark.timeout(150)]

BIRD_CONF = """
router id 192.0.2.10;
log stderr all;
protocol device { }
protocol static s4 { ipv4; route 198.51.100.0/24 unreachable; }
protocol static s6 { ipv6; route 2001:db8:99::/48 unreachable; }
protocol bgp v4 {
  local 192.0.2.10 as 65010; neighbor 192.0.2.1 as 65000;
  ipv4 { import all; export where source = RTS_STATIC; };
}
protocol bgp v6 {
  local 2001:db8:10::10 as 65010; neighbor 2001:db8:10::1 as 65000;
  ipv6 { import all; export where source = RTS_STATIC; };
}
"""


@pytest.fixture(scope="module", params=DRIVERS)
def pece(request: pytest.FixtureRequest) -> Iterator[tuple[RunningLab, Bird]]:
    lab = start_lab("pe_ce", driver=request.param)
    ce = None
    try:
        # what ce1 holds behind itself: an address in each prefix it announces
        lab.run("ce1", "ip", "addr", "add", "198.51.100.1/32", "dev", "lo", check=True)
        lab.run("ce1", "ip", "-6", "addr", "add", "2001:db8:99::1/128", "dev", "lo", check=True)
        ce = Bird(lab, "ce1", BIRD_CONF)
        yield lab, ce
    finally:
        if ce is not None:
            ce.stop()
        lab.teardown()


def _wait(cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not in {timeout} s: {what}")
        time.sleep(0.3)


def test_r10_2_pe_ce_vm_announces_its_prefixes_into_the_vpn_over_a_port_session(
        pece: tuple[RunningLab, Bird]) -> None:
    lab, ce = pece
    _wait(lambda: ce.established("v4") and ce.established("v6"), 40, "BIRD's sessions with the gateway up")

    def learned() -> bool:
        table = lab.api("h2", "/v1/vpns/red")["table"]
        return "198.51.100.0/24" in table and "2001:db8:99::/48" in table

    _wait(learned, 30, "ce1's prefixes in h2's VRF")
    table = lab.api("h2", "/v1/vpns/red")["table"]
    (e,) = table["198.51.100.0/24"]
    assert e["next_hop"] == lab.underlay("h1"), e
    # on h1 the prefix is routed to the CE's address in the VRF (its port)
    (own,) = lab.api("h1", "/v1/vpns/red")["table"]["198.51.100.0/24"]
    assert own["next_hop"] == "192.0.2.10", own
    # the CE learned the VPN's routes from us: red2's address, our AS first in the path
    _wait(lambda: "192.0.2.20/32" in ce.birdc("show route protocol v4"), 20, "red2's route at the CE")
    assert "65000" in ce.birdc("show route 192.0.2.20/32 all")
    # traffic from another host of the VPN to addresses behind the CE, both families
    assert lab.reaches("red2", "198.51.100.1", count=3)
    assert lab.reaches("red2", "2001:db8:99::1", count=3)
    c = lab.counters("h1")["local_sessions"]
    assert c["to_local"] > 0 and c["from_local"] > 0, c


def test_r10_2_pe_ce_vm_withdrawal_and_session_loss_leave_the_vpn(pece: tuple[RunningLab, Bird]) -> None:
    lab, ce = pece
    _wait(lambda: "198.51.100.0/24" in lab.api("h2", "/v1/vpns/red")["table"], 40, "ce1's prefix at h2")
    ce.birdc("disable v4")
    _wait(lambda: "198.51.100.0/24" not in lab.api("h2", "/v1/vpns/red")["table"], 20,
          "ce1's IPv4 prefix withdrawn from the VPN after its session went down")
    assert "2001:db8:99::/48" in lab.api("h2", "/v1/vpns/red")["table"]  # the other session stays
    ce.birdc("enable v4")
    _wait(lambda: "198.51.100.0/24" in lab.api("h2", "/v1/vpns/red")["table"], 30, "back after the session")
