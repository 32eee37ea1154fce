"""The operator's CLI (issue 16): the real `vpe` executable against a running agent with a GoBGP peer.

Why: what an operator sees is only proven by running the commands they type,
with stdout piped as in a script (``| grep``), against a real session. One
agent (`vpe agent`, dataplane none) peers with GoBGP 3.10 over VPNv4,
VPNv6 and RT constraint; GoBGP originates VPN routes and (through a VRF)
an RTC route, vpe exports a port's route. Every command's ``--json`` is
checked against docs/cli-schema.json, no output line holds the ellipsis a
cut table would, and each session action is seen from GoBGP's side too:
the ROUTE-REFRESH it received (soft reset in), the UPDATEs it received again
(soft reset out), the session going down and coming back (shutdown /
enable, hard reset).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemons import GoBGP, Neighbor, free_port, require_binary, wait_until
from json_schema import check, errors

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "cli-schema.json").read_text())
ME, GOBGP = "127.0.0.66", "127.0.0.67"
RT = "65000:1"

CONFIG = """
state_dir = "{state}"
[bgp]
local_as = 65000
router_id = "198.18.0.66"
[[neighbors]]
address = "{gobgp}"
port = {port}
local_address = "{me}"
remote_as = 65000
families = ["vpnv4", "vpnv6", "rtc"]
description = "route reflector gobgp-1 (lab rack 3)"
max_prefixes = 1000
connect_retry = 1
[api]
socket = "{sock}"
[dataplane]
driver = "none"
"""


def _vpe_binary() -> str:
    """The installed `vpe` script next to this interpreter (what an operator runs)."""
    exe = Path(sys.executable).parent / "vpe"
    if not exe.exists():
        pytest.skip(f"no `vpe` executable next to {sys.executable}: install the package (pip install -e .)")
    return str(exe)


class Setup:
    def __init__(self, sock: str, gobgp: GoBGP) -> None:
        self.sock = sock
        self.g = gobgp

    def run(self, *args: str, code: int = 0) -> str:
        """``vpe ARGS --socket S`` with stdout piped; asserts the exit code and returns stdout."""
        r = subprocess.run([_vpe_binary(), *args, "--socket", self.sock], capture_output=True, text=True,
                           timeout=30, check=False, env={**os.environ, "COLUMNS": "80"})
        assert r.returncode == code, f"vpe {' '.join(args)}: exit {r.returncode}, stderr {r.stderr!r}"
        for line in (r.stdout + r.stderr).splitlines():
            assert "…" not in line, f"vpe {' '.join(args)} cut a value: {line!r}"
        if code:
            assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
            return r.stderr
        return r.stdout

    def json(self, definition: str, *args: str) -> Any:
        data = json.loads(self.run(*args, "--json"))
        check(data, SCHEMA, definition)
        return data

    def gobgp_messages(self) -> dict[str, Any]:
        state = self.g.cli_json("neighbor", ME)["state"]
        return dict(state.get("messages", {}).get("received", {}))

    def established(self) -> bool:
        n = self.json("neighbor", "show", "bgp", "neighbors", GOBGP)
        return bool(n["state"] == "Established" and self.g.established(ME))


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    require_binary("gobgpd", "gobgpd")
    _vpe_binary()
    gport = free_port(GOBGP)
    g = GoBGP(workdir=tmp_path_factory.mktemp("gobgp"), address=GOBGP, port=gport, local_as=65000,
              router_id="198.18.0.67",
              neighbors=[Neighbor(ME, 65000, 179, passive=True, families=("vpnv4", "vpnv6", "rtc"))])
    g.start()
    d = Path(tempfile.mkdtemp(prefix="vpe-cli-"))  # short: Unix socket path limit
    sock = d / "api.sock"
    cfg = d / "vpe.toml"
    cfg.write_text(CONFIG.format(state=d / "state", sock=sock, gobgp=GOBGP, port=gport, me=ME))
    log = (d / "agent.log").open("wb")
    proc = subprocess.Popen([_vpe_binary(), "agent", "-c", str(cfg), "--log-level", "info"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        # GoBGP: a VRF importing RT (so it originates the RTC route vpe needs to send it
        # VPN routes), a VPNv4 route and a VPNv6 route with an IPv4 next hop (IPv4-mapped)
        g.add_vrf("g1", "65000:9", RT, RT)
        g.add_vpnv4("192.0.2.0/24", "65000:1", RT, 100, "198.18.0.5")
        g.add_vpnv6("2001:db8:1::/48", "65000:1", RT, 102, "::ffff:198.18.0.5")
        s = Setup(str(sock), g)
        wait_until(sock.exists, 20, "the agent's API socket")
        wait_until(lambda: g.established(ME), 30, "vpe <-> GoBGP session")
        # vpe: a VPN instance with RD 65000:1; port p1's route wins everywhere (LOCAL_PREF 300),
        # GoBGP also announces p2's /32, with a LOCAL_PREF higher than vpe's: vpe has two paths
        s.run("vpn", "create", "blue", "--rt", RT, "--rd", "65000:1")
        s.run("attach", "p1", "--vpn", "blue", "--ifname", "tap-p1", "--mac", "02:00:00:00:66:01",
              "--ip", "192.0.2.71/24", "--local-pref", "300")
        s.run("attach", "p2", "--vpn", "blue", "--ifname", "tap-p2", "--mac", "02:00:00:00:66:02",
              "--ip", "192.0.2.72/24")
        g.add_vpnv4("192.0.2.72/32", "65000:1", RT, 172, "198.18.0.5", "local-pref", "200")
        wait_until(lambda: g.rib("vpnv4", "adj-in", ME).get("65000:1:192.0.2.71/32"), 15, "vpe's route in GoBGP")
        wait_until(lambda: len(s.json("neighbor_routes", "show", "bgp", "received-routes", GOBGP)["routes"]) == 2,
                   15, "GoBGP's two VPNv4 routes in vpe")
        yield s
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
        g.stop()
        print((d / "agent.log").read_text()[-3000:])


def _until(fn: Any, what: str, timeout: float = 20) -> Any:
    return wait_until(fn, timeout, what, interval=0.2)


def test_summary_piped_grep_established_and_header(setup: Setup) -> None:
    out = subprocess.run(f"'{_vpe_binary()}' show bgp summary --socket '{setup.sock}' | grep Established",
                         shell=True, capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 0 and GOBGP in out.stdout, out
    text = setup.run("show", "bgp", "summary")
    assert "BGP router identifier 198.18.0.66, local AS number 65000" in text
    assert "route reflector gobgp-1 (lab rack 3)" in text  # long description whole, not cut at 80 columns
    data = setup.json("summary", "show", "bgp", "summary")
    (n,) = data["neighbors"]
    assert n["counters"]["messages_in"] > 0 and n["counters"]["messages_out"] > 0
    assert n["prefixes"]["vpnv4"]["received"] >= 2 and n["prefixes"]["vpnv4"]["sent"] >= 1
    assert n["prefixes"]["rtc"]["received"] >= 1
    assert n["uptime"] is not None and n["downtime"] is None


def test_neighbor_detail_configured_families_description_limit(setup: Setup) -> None:
    n = setup.json("neighbor", "show", "bgp", "neighbors", GOBGP)
    assert n["configured_families"] == ["rtc", "vpnv4", "vpnv6"]
    assert n["description"] == "route reflector gobgp-1 (lab rack 3)" and n["max_prefixes"] == 1000
    setup.json("neighbors", "show", "bgp", "neighbors")
    text = setup.run("show", "bgp", "neighbors", GOBGP)
    assert "prefix limit: 1000 per family, action teardown" in text and "configured families: rtc,vpnv4,vpnv6" in text
    assert "{" not in text and "None" not in text  # no Python reprs


def test_routes_rfc_notation_short_families_next_hop(setup: Setup) -> None:
    rtc = setup.json("routes", "show", "bgp", "routes", "-f", "rtc")
    mine = [r["route"] for r in rtc["routes"] if r["peer"] == GOBGP]
    assert "65000:target:65000:1" in mine, rtc  # origin-as:rt (RFC 4684)
    assert "65000:target:65000:1" in setup.run("show", "bgp", "routes", "--family", "rtc")
    v6 = setup.json("routes", "show", "bgp", "routes", "-f", "vpnv6")
    (r6,) = [r for r in v6["routes"] if r["route"] == "65000:1:2001:db8:1::/48"]
    assert r6["next_hop"] == "198.18.0.5"  # not ::ffff:198.18.0.5
    v4 = setup.json("routes", "show", "bgp", "routes", "-f", "vpnv4")
    assert v4["family"] == "vpnv4" and v4["total"] >= 3
    assert "65000:1:192.0.2.0/24" in setup.run("show", "bgp", "routes", "-f", "vpnv4")
    for short, full in (("ipv4", "ipv4-unicast"), ("ipv4-lu", "ipv4-labeled-unicast"), ("mvpn", "ipv4-mcast-vpn")):
        assert setup.json("routes", "show", "bgp", "routes", "-f", short)["family"] == full
    err = setup.run("show", "bgp", "routes", "-f", "vpnv9", code=2)
    assert "vpnv9" in err and "vpnv4" in err


def test_received_and_advertised_routes(setup: Setup) -> None:
    rec = setup.json("neighbor_routes", "show", "bgp", "received-routes", GOBGP, "-f", "vpnv4")
    assert {r["route"] for r in rec["routes"]} == {"65000:1:192.0.2.0/24", "65000:1:192.0.2.72/32"}
    adv = setup.json("neighbor_routes", "show", "bgp", "advertised-routes", GOBGP, "-f", "vpnv4")
    (mine,) = [r for r in adv["routes"] if r["route"] == "65000:1:192.0.2.71/32"]
    assert mine["attributes"]["local_pref"] == 300 and f"target:{RT}" in mine["attributes"]["extended_communities"]
    # GoBGP's Adj-RIB-In from us holds the same route
    assert setup.g.rib("vpnv4", "adj-in", ME).get("65000:1:192.0.2.71/32")
    assert "65000:1:192.0.2.71/32" in setup.run("show", "bgp", "advertised-routes", GOBGP)
    assert "no neighbor" in setup.run("show", "bgp", "received-routes", "127.0.0.68", code=1)
    assert "not an IP address" in setup.run("show", "bgp", "received-routes", "gobgp-1", code=2)


def test_lookup_best_path_and_reason(setup: Setup) -> None:
    d = setup.json("lookup", "show", "bgp", "route", "192.0.2.72/32", "--rd", "65000:1")
    (dest,) = d["destinations"]
    assert len(dest["paths"]) == 2
    best, other = dest["paths"]
    assert best["best"] and best["peer"] == GOBGP and best["attributes"]["local_pref"] == 200
    assert not other["best"] and other["peer"] == "local"
    assert dest["best_reason"]["step"] == "local_pref"  # GoBGP's 200 against our 100
    text = setup.run("show", "bgp", "route", "192.0.2.72/32", "--rd", "65000:1")
    assert "LOCAL_PREF" in text and "*>" in text
    # an address: the longest prefix holding it
    d = setup.json("lookup", "show", "bgp", "route", "192.0.2.5", "-f", "vpnv4")
    assert [x["route"] for x in d["destinations"]] == ["65000:1:192.0.2.0/24"]
    assert d["destinations"][0]["best_reason"]["step"] == "only_path"
    assert "no vpnv4 route" in setup.run("show", "bgp", "route", "203.0.113.0/24", code=1)
    assert "prefix" in setup.run("show", "bgp", "route", "banana", code=2)


def test_soft_reset_in_gobgp_receives_route_refresh(setup: Setup) -> None:
    before = setup.gobgp_messages()
    d = setup.json("soft_reset", "bgp", "soft-reset", GOBGP, "--direction", "in")
    assert sorted(d["refreshed"]) == ["rtc", "vpnv4", "vpnv6"]
    after = _until(lambda: (m := setup.gobgp_messages()).get("refresh", 0) > before.get("refresh", 0) and m,
                   "GoBGP counting our ROUTE-REFRESH")
    assert after["refresh"] - before.get("refresh", 0) == 3, (before, after)


def test_soft_reset_out_routes_sent_again(setup: Setup) -> None:
    before = setup.gobgp_messages()
    d = setup.json("soft_reset", "bgp", "soft-reset", GOBGP, "--direction", "out")
    assert sorted(d["resent"]) == ["rtc", "vpnv4", "vpnv6"]
    # at least our VPNv4 route, our RTC route and an End-of-RIB per family come again
    after = _until(lambda: (m := setup.gobgp_messages()).get("update", 0) >= before.get("update", 0) + 5 and m,
                   "GoBGP receiving our routes again")
    assert setup.g.rib("vpnv4", "adj-in", ME).get("65000:1:192.0.2.71/32")
    assert after["refresh"] == before.get("refresh", 0)  # no ROUTE-REFRESH involved
    assert setup.established()


def test_shutdown_and_enable(setup: Setup) -> None:
    setup.json("admin", "bgp", "shutdown", GOBGP, "-m", "maintenance window 42")
    _until(lambda: not setup.g.established(ME), "GoBGP seeing the session go down")
    n = setup.json("neighbor", "show", "bgp", "neighbors", GOBGP)
    assert n["admin_down"] and n["state"] == "Idle" and n["downtime"] is not None
    assert n["prefixes"]["vpnv4"]["received"] == 0
    assert "Admin-down" in setup.run("show", "bgp", "summary")
    time.sleep(2.5)  # longer than connect_retry: it stays down
    assert not setup.g.established(ME)
    assert "shut down" in setup.run("bgp", "reset", GOBGP, code=1)
    setup.json("admin", "bgp", "enable", GOBGP)
    _until(setup.established, "the session back after enable", 30)
    _until(lambda: setup.json("neighbor", "show", "bgp", "neighbors", GOBGP)["prefixes"]["vpnv4"]["received"] >= 2,
           "GoBGP's routes again")


def test_hard_reset(setup: Setup) -> None:
    n0 = setup.json("neighbor", "show", "bgp", "neighbors", GOBGP)["counters"]["established_transitions"]
    setup.json("reset", "bgp", "reset", GOBGP)
    _until(lambda: setup.json("neighbor", "show", "bgp", "neighbors", GOBGP)["counters"]
           ["established_transitions"] == n0 + 1 and setup.established(), "the session reset and back", 30)
    assert "no neighbor" in setup.run("bgp", "reset", "127.0.0.68", code=1)


def test_vpn_update_changes_export_rts_at_gobgp(setup: Setup) -> None:
    d = setup.json("vpn", "vpn", "update", "blue", "--export-rt", RT, "--export-rt", "65000:2",
                   "--description", "blue, now also exported to 65000:2")
    assert d["export_rts"] == [f"target:{RT}", "target:65000:2"]

    def rts() -> list[str]:
        paths = setup.g.rib("vpnv4", "adj-in", ME).get("65000:1:192.0.2.71/32") or []
        ext = next((a["value"] for p in paths for a in p["attrs"] if a["type"] == 16), [])
        return sorted(e["value"] for e in ext if e.get("subtype") == 2)

    _until(lambda: rts() == [RT, "65000:2"], "the new export RT at GoBGP")
    setup.json("vpns", "vpn", "list")
    assert "nothing to change" in setup.run("vpn", "update", "blue", code=2)


def test_version_and_schema_rejects_bad_json(setup: Setup) -> None:
    r = subprocess.run([_vpe_binary(), "--version"], capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 0 and r.stdout.startswith("vpe ")
    # the validator is not vacuous: old-style keys and a mapped next hop are refused
    route = {"route": "65000:1:192.0.2.0/24", "family": "vpnv4", "next_hop": "::ffff:198.18.0.5", "path_id": 0,
             "attributes": {"local-pref": 100}}
    problems = errors(route, {"$ref": "#/$defs/route"}, SCHEMA)
    assert any("local-pref" in p for p in problems) and any("next_hop" in p for p in problems), problems
