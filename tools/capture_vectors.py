#!/usr/bin/env python3
"""Capture BGP test vectors from real daemons talking to each other on loopback.

Why: vpe's codec must agree with what deployed speakers put on the wire, and
with an independent decoder. This tool runs pairs of real daemons (GoBGP,
FRR bgpd, BIRD, ExaBGP) against each other -- vpe is not involved -- has
each side originate VPNv4/VPNv6 (RD types 0/1/2), RT-constraint, ADD-PATH,
labeled-unicast and encapsulation-community routes, records the session with
dumpcap into ``tests/vectors/<name>.pcap``, and writes tshark's decode of the
BGP layer beside it as ``<name>.tshark.json``. ``manifest.json`` lists every
capture with its port, daemons, versions and tshark's message counts.

Run as root (bgpd drops to the frr user, dumpcap needs capture rights):

    python tools/capture_vectors.py            # all scenarios
    python tools/capture_vectors.py gobgp_frr_vpn   # just one

Every daemon is stopped by its pid in a ``finally``; every wait is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "interop"))

from daemons import (  # noqa: E402  (path set up just above)
    BIRD,
    FRR,
    Daemon,
    DaemonError,
    ExaBGP,
    GoBGP,
    Neighbor,
    free_port,
    wait_until,
)

VECTORS = ROOT / "tests" / "vectors"
SETTLE = 1.5  # seconds to let trailing UPDATEs / End-of-RIB go out before stopping
ROUTE_TIMEOUT = 30.0


# --------------------------------------------------------------------------- capture


class Capture:
    """dumpcap on ``lo`` for one TCP port, written as classic pcap (dpkt reads it directly)."""

    def __init__(self, path: Path, port: int) -> None:
        self.path = path
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = path.with_suffix(".dumpcap.log")

    def __enter__(self) -> Capture:
        dumpcap = shutil.which("dumpcap")
        if dumpcap is None:
            raise SystemExit("dumpcap not installed: apt-get install tshark")
        self.path.unlink(missing_ok=True)
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    dumpcap,
                    "-q",
                    "-P",
                    "-i",
                    "lo",
                    "-f",
                    f"tcp port {self.port}",
                    "-w",
                    str(self.path),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(self._started, 10, "dumpcap to start capturing")
        time.sleep(0.5)
        return self

    def _started(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise DaemonError(f"dumpcap exited: {self.log.read_text(errors='replace')}")
        return self.path.exists() and self.path.stat().st_size >= 24

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.5)  # let the last FIN/ACK land in the file
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.unlink(missing_ok=True)


# --------------------------------------------------------------------------- tshark


def tshark_decode(pcap: Path, port: int) -> list[dict[str, Any]]:
    """Decode ``pcap`` with tshark and keep only the BGP layer of each frame.

    Returns one entry per frame that carries BGP: ``frame`` (1-based number
    in the pcap), ``src``/``dst`` (``ip:port``) and ``bgp``: a list of
    tshark's per-message objects in wire order (tshark puts several BGP
    messages of one TCP segment into one frame; reassembled messages are
    attached to the frame that completes them).
    """
    out = subprocess.run(
        [
            "tshark",
            "-r",
            str(pcap),
            "-d",
            f"tcp.port=={port},bgp",
            "-Y",
            "bgp",
            "-T",
            "json",
            "--no-duplicate-keys",
            "-o",
            "tcp.desegment_tcp_streams:TRUE",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    nlri_texts = iter(tshark_nlri_text(pcap, port))
    frames: list[dict[str, Any]] = []
    for pkt in json.loads(out or "[]"):
        layers = pkt["_source"]["layers"]
        bgp = layers.get("bgp", [])
        if isinstance(bgp, dict):
            bgp = [bgp]
        for msg in bgp:
            text = next(nlri_texts)
            if text:
                msg["_nlri_text"] = text
        ip = layers.get("ip", {})
        tcp = layers.get("tcp", {})
        frames.append(
            {
                "frame": int(layers["frame"]["frame.number"]),
                "src": f"{ip.get('ip.src')}:{tcp.get('tcp.srcport')}",
                "dst": f"{ip.get('ip.dst')}:{tcp.get('tcp.dstport')}",
                "bgp": bgp,
            }
        )
    return frames


_NLRI_CONTAINERS = {
    "bgp.update.path_attribute.mp_reach_nlri": "mp_reach",
    "bgp.update.path_attribute.mp_unreach_nlri": "mp_unreach",
    "bgp.update.nlri": "nlri",
    "bgp.update.withdrawn_routes": "withdrawn",
}


def tshark_nlri_text(pcap: Path, port: int) -> list[dict[str, list[str]]]:
    """Per BGP message, tshark's one-line summary of each NLRI, from PDML.

    Why: for some families (VPNv6, labeled unicast) tshark 4.0 puts the RD and
    prefix only into the display text of the NLRI item, which ``-T json``
    drops; PDML keeps it as ``showname``. Returns one dict per BGP message in
    capture order: ``{"mp_reach": ["Label Stack=110 (bottom) RD=65000:100,
    IPv6=2001:db8:100::/48"], ...}`` (empty dict when there is no NLRI).
    """
    pdml = subprocess.run(
        ["tshark", "-r", str(pcap), "-d", f"tcp.port=={port},bgp", "-Y", "bgp", "-T", "pdml"],
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout
    root = ET.fromstring(pdml)
    out: list[dict[str, list[str]]] = []
    for packet in root.iter("packet"):
        for proto in packet.findall("proto"):
            if proto.get("name") != "bgp":
                continue
            found: dict[str, list[str]] = {}
            for field in proto.iter("field"):
                kind = _NLRI_CONTAINERS.get(field.get("name", ""))
                if kind is None:
                    continue
                for child in field.findall("field"):
                    text = child.get("showname") or child.get("show") or ""
                    found.setdefault(kind, []).append(text.strip())
            out.append(found)
    return out


_TYPE_NAMES = {1: "OPEN", 2: "UPDATE", 3: "NOTIFICATION", 4: "KEEPALIVE", 5: "ROUTE-REFRESH"}


def message_counts(frames: list[dict[str, Any]]) -> dict[str, Any]:
    """Total BGP messages and per-type counts, from tshark's ``bgp.type`` fields."""
    by_type: dict[str, int] = {}
    total = 0
    for frame in frames:
        for msg in frame["bgp"]:
            name = _TYPE_NAMES.get(int(msg["bgp.type"]), msg["bgp.type"])
            by_type[name] = by_type.get(name, 0) + 1
            total += 1
    return {"total": total, "by_type": dict(sorted(by_type.items()))}


# --------------------------------------------------------------------------- versions


def _first_line(cmd: list[str], pattern: str) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "not installed"
    match = re.search(pattern, proc.stdout + proc.stderr)
    return match.group(1) if match else "unknown"


def versions() -> dict[str, str]:
    """Versions of everything that produced or decoded the vectors."""
    return {
        "gobgpd": _first_line(["gobgpd", "--version"], r"version (\S+)"),
        "frr-bgpd": _first_line(["/usr/lib/frr/bgpd", "--version"], r"version (\S+)"),
        "bird": _first_line(["bird", "--version"], r"version (\S+)"),
        "exabgp": _first_line(["exabgp", "--version"], r"ExaBGP : (\S+)"),
        "tshark": _first_line(["tshark", "--version"], r"TShark \(Wireshark\) (\S+)"),
    }


# --------------------------------------------------------------------------- scenarios


@dataclass(frozen=True, slots=True)
class Scenario:
    """One capture: a description for the README and a function that drives the daemons."""

    name: str
    description: str
    daemons: tuple[str, ...]
    run: Callable[[Path, int], dict[str, Any]]


@contextlib.contextmanager
def running(*daemons: Daemon) -> Iterator[None]:
    """Start daemons in order; stop all of them (reverse order) whatever happens."""
    started: list[Daemon] = []
    try:
        for d in daemons:
            d.start()
            started.append(d)
        yield
    finally:
        for d in reversed(started):
            d.stop()


def _count_gobgp(g: GoBGP, family: str) -> int:
    return sum(len(paths) for paths in g.rib(family).values())


def _count_frr(f: FRR, afi: str) -> int:
    data = f.json(f"show bgp {afi} vpn json")
    total = 0
    for rd in data.get("routes", {}).get("routeDistinguishers", {}).values():
        for paths in rd.values():
            total += len(paths)
    return total


def _count_bird(b: BIRD, table: str) -> int:
    return len(b.routes(table))


def _gobgp_view(g: GoBGP, families: tuple[str, ...], neighbor: str | None = None) -> dict[str, Any]:
    """GoBGP's own JSON RIB (global, or adj-in from ``neighbor``) per family, ``age`` dropped."""
    view: dict[str, Any] = {}
    for fam in families:
        rib = g.rib(fam, "adj-in", neighbor) if neighbor else g.rib(fam)
        for paths in rib.values():
            for path in paths:
                path.pop("age", None)
        view[fam] = rib
    return view


def _frr_view(f: FRR) -> dict[str, Any]:
    """FRR's ``show bgp ipv4|ipv6 vpn json``."""
    return {afi: f.json(f"show bgp {afi} vpn json") for afi in ("ipv4", "ipv6")}


def _bird_view(b: BIRD, tables: tuple[str, ...]) -> dict[str, Any]:
    """BIRD's routes per table, parsed from ``show route table X all``."""
    return {t: b.routes(t) for t in tables}


def _wait(what: str, predicate: Callable[[], bool]) -> None:
    wait_until(predicate, ROUTE_TIMEOUT, what, interval=0.3)


def scenario_gobgp_frr_vpn(work: Path, port: int) -> dict[str, Any]:
    """iBGP GoBGP (active) <-> FRR (passive): VPNv4 RD types 0/1/2, VPNv6, encap community."""
    fams = ("vpnv4", "vpnv6")
    g = GoBGP(
        work / "gobgp",
        "127.0.0.21",
        free_port(),
        65000,
        "198.18.0.21",
        [Neighbor("127.0.0.22", 65000, port, families=fams)],
    )
    f = FRR(
        work / "frr",
        "127.0.0.22",
        port,
        65000,
        "198.18.0.22",
        [Neighbor("127.0.0.21", 65000, g.port, passive=True, families=fams)],
        extra_global="route-map RT200 permit 10\n set extcommunity rt 65000:200",
        extra_config="\n".join(
            [
                " address-family ipv4 vpn",
                "  network 198.51.100.0/24 rd 65000:200 label 200 route-map RT200",
                "  network 198.51.100.0/25 rd 198.18.0.22:201 label 201 route-map RT200",
                "  network 198.51.100.128/25 rd 4200000000:202 label 202 route-map RT200",
                " exit-address-family",
                " address-family ipv6 vpn",
                "  network 2001:db8:200::/48 rd 65000:200 label 210 route-map RT200",
                " exit-address-family",
                # Keep a real-world oddity on record: with disable-addpath-rx FRR 8.4
                # still sends the ADD-PATH capability, with send/receive = 0.
                " address-family ipv4 vpn",
                "  neighbor 127.0.0.21 disable-addpath-rx",
                " exit-address-family",
                " address-family ipv6 vpn",
                "  neighbor 127.0.0.21 disable-addpath-rx",
                " exit-address-family",
            ]
        ),
    )
    with running(f, g):
        g.wait_established("127.0.0.22")
        g.add_vpnv4(
            "192.0.2.0/24", "65000:100", "65000:100", 100, "198.18.0.21", "encap", "mpls-in-udp"
        )
        g.add_vpnv4("192.0.2.0/25", "198.18.0.21:101", "65000:101", 101, "198.18.0.21")
        g.add_vpnv4("192.0.2.128/25", "64086.59904:102", "65000:102", 102, "198.18.0.21")
        g.add_vpnv6("2001:db8:100::/48", "65000:100", "65000:100", 110, "2001:db8:ffff::21")
        _wait(
            "FRR to learn GoBGP's VPN routes",
            lambda: _count_frr(f, "ipv4") >= 6 and _count_frr(f, "ipv6") >= 2,
        )
        _wait(
            "GoBGP to learn FRR's VPN routes",
            lambda: _count_gobgp(g, "vpnv4") >= 6 and _count_gobgp(g, "vpnv6") >= 2,
        )
        time.sleep(SETTLE)
        return {"gobgpd 127.0.0.21": _gobgp_view(g, fams), "bgpd 127.0.0.22": _frr_view(f)}


_BIRD_STATIC = """
protocol static vpn4_static {{
  vpn4 {{ table vpntab4; }};
  route 65000:{n} {p4}.0/24 unreachable {{ bgp_ext_community.add((rt, 65000, {n})); }};
  route {rid}:{n1} {p4}.0/25 unreachable {{ bgp_ext_community.add((rt, 65000, {n})); }};
  route 4200000000:{n2} {p4}.128/25 unreachable {{ bgp_ext_community.add((rt, 65000, {n})); }};
}}
protocol static vpn6_static {{
  vpn6 {{ table vpntab6; }};
  route 65000:{n} {p6}::/48 unreachable {{ bgp_ext_community.add((rt, 65000, {n})); }};
}}
"""


def scenario_gobgp_bird_vpn_lu(work: Path, port: int) -> dict[str, Any]:
    """iBGP GoBGP (active) <-> BIRD (passive): VPNv4/VPNv6 both ways and IPv4 labeled unicast."""
    fams = ("vpnv4", "vpnv6", "ipv4-labeled")
    g = GoBGP(
        work / "gobgp",
        "127.0.0.23",
        free_port(),
        65000,
        "198.18.0.23",
        [Neighbor("127.0.0.24", 65000, port, families=fams)],
    )
    b = BIRD(
        work / "bird",
        "127.0.0.24",
        port,
        65000,
        "198.18.0.24",
        [Neighbor("127.0.0.23", 65000, g.port, passive=True, families=fams)],
        extra_config=_BIRD_STATIC.format(
            n=400, n1=401, n2=402, rid="198.18.0.24", p4="198.51.100", p6="2001:db8:400"
        )
        + "protocol static lu_static { ipv4; route 203.0.113.0/24 unreachable; }\n",
    )
    with running(b, g):
        g.wait_established("127.0.0.24")
        g.add_vpnv4("192.0.2.0/24", "65000:300", "65000:300", 300, "198.18.0.23")
        g.add_vpnv6("2001:db8:300::/48", "65000:300", "65000:300", 310, "2001:db8:ffff::23")
        g.add_route("ipv4-labeled", "192.0.2.128/25", "301", "nexthop", "198.18.0.23")
        _wait(
            "BIRD to learn GoBGP's routes",
            lambda: (
                _count_bird(b, "vpntab4") >= 4
                and _count_bird(b, "vpntab6") >= 2
                and _count_bird(b, "master4") >= 2
            ),
        )
        _wait(
            "GoBGP to learn BIRD's routes",
            lambda: (
                _count_gobgp(g, "vpnv4") >= 4
                and _count_gobgp(g, "vpnv6") >= 2
                and _count_gobgp(g, "ipv4-labeled") >= 2
            ),
        )
        time.sleep(SETTLE)
        return {
            "gobgpd 127.0.0.23": _gobgp_view(g, fams),
            "bird 127.0.0.24": _bird_view(b, ("vpntab4", "vpntab6", "master4")),
        }


def scenario_frr_bird_vpn_ebgp(work: Path, port: int) -> dict[str, Any]:
    """eBGP FRR AS65001 (active) <-> BIRD AS65002 (passive): VPNv4/VPNv6 with AS_PATH both ways."""
    fams = ("vpnv4", "vpnv6")
    f = FRR(
        work / "frr",
        "127.0.0.25",
        free_port(),
        65001,
        "198.18.0.25",
        [Neighbor("127.0.0.26", 65002, port, families=fams)],
        extra_global="\n".join(
            [
                "route-map RT500 permit 10",
                " set extcommunity rt 65001:500",
                # FRR would send ::ffff:127.0.0.25, which BIRD reads as an IPv4 next hop
                # and rejects for vpn6; give it a real IPv6 next hop instead.
                "route-map NH6 permit 10",
                " set ipv6 next-hop global 2001:db8:ffff::25",
            ]
        ),
        extra_config="\n".join(
            [
                " address-family ipv4 vpn",
                "  network 192.0.2.0/24 rd 65001:500 label 500 route-map RT500",
                "  network 192.0.2.64/26 rd 198.18.0.25:501 label 501 route-map RT500",
                " exit-address-family",
                " address-family ipv6 vpn",
                "  network 2001:db8:500::/48 rd 65001:500 label 510 route-map RT500",
                "  neighbor 127.0.0.26 route-map NH6 out",
                " exit-address-family",
            ]
        ),
    )
    b = BIRD(
        work / "bird",
        "127.0.0.26",
        port,
        65002,
        "198.18.0.26",
        [Neighbor("127.0.0.25", 65001, f.port, passive=True, families=fams)],
        # FRR drops next hops in 127/8 as martians: announce a 198.18/15 one.
        channel_options={"vpnv4": "next hop address 198.18.0.26;"},
        extra_config=_BIRD_STATIC.format(
            n=600, n1=601, n2=602, rid="198.18.0.26", p4="203.0.113", p6="2001:db8:600"
        ),
    )
    with running(b, f):
        f.wait_established("127.0.0.26")
        _wait(
            "BIRD to learn FRR's routes",
            lambda: _count_bird(b, "vpntab4") >= 5 and _count_bird(b, "vpntab6") >= 2,
        )
        _wait(
            "FRR to learn BIRD's routes",
            lambda: _count_frr(f, "ipv4") >= 5 and _count_frr(f, "ipv6") >= 2,
        )
        time.sleep(SETTLE)
        return {
            "bgpd 127.0.0.25": _frr_view(f),
            "bird 127.0.0.26": _bird_view(b, ("vpntab4", "vpntab6")),
        }


def scenario_gobgp_gobgp_rtc(work: Path, port: int) -> dict[str, Any]:
    """iBGP GoBGP <-> GoBGP with RT constraint: VRFs generate RTC routes, VPNv4 filtered by them."""
    fams = ("rtc", "vpnv4")
    a = GoBGP(
        work / "a",
        "127.0.0.27",
        free_port(),
        65000,
        "198.18.0.27",
        [Neighbor("127.0.0.28", 65000, port, families=fams)],
    )
    b = GoBGP(
        work / "b",
        "127.0.0.28",
        port,
        65000,
        "198.18.0.28",
        [Neighbor("127.0.0.27", 65000, a.port, passive=True, families=fams)],
    )
    with running(b, a):
        a.wait_established("127.0.0.28")
        b.add_vrf("blue", "65000:701", "65000:700", "65000:700")
        a.add_vrf("blue", "65000:700", "65000:700", "65000:700")
        a.add_vrf("green", "65000:800", "65000:800", "65000:800")
        a.cli("vrf", "blue", "rib", "add", "192.0.2.0/24", "-a", "ipv4", "nexthop", "198.18.0.27")
        a.cli(
            "vrf", "green", "rib", "add", "198.51.100.0/24", "-a", "ipv4", "nexthop", "198.18.0.27"
        )
        b.cli("vrf", "blue", "rib", "add", "203.0.113.0/24", "-a", "ipv4", "nexthop", "198.18.0.28")
        _wait(
            "RTC routes both ways",
            lambda: _count_gobgp(a, "rtc") >= 3 and _count_gobgp(b, "rtc") >= 3,
        )
        _wait(
            "blue VPN routes both ways",
            lambda: _count_gobgp(b, "vpnv4") >= 2 and _count_gobgp(a, "vpnv4") >= 3,
        )
        time.sleep(SETTLE)
        return {
            "gobgpd 127.0.0.27": _gobgp_view(a, fams),
            "gobgpd 127.0.0.28": _gobgp_view(b, fams),
        }


def scenario_gobgp_gobgp_addpath(work: Path, port: int) -> dict[str, Any]:
    """iBGP GoBGP -> GoBGP with ADD-PATH on IPv4 unicast: two paths (ids 1, 2) for one prefix."""
    a = GoBGP(
        work / "a",
        "127.0.0.29",
        free_port(),
        65000,
        "198.18.0.29",
        [
            Neighbor(
                "127.0.0.30", 65000, port, families=("ipv4",), addpath_send=4, addpath_receive=True
            )
        ],
    )
    b = GoBGP(
        work / "b",
        "127.0.0.30",
        port,
        65000,
        "198.18.0.30",
        [
            Neighbor(
                "127.0.0.29",
                65000,
                a.port,
                passive=True,
                families=("ipv4",),
                addpath_send=4,
                addpath_receive=True,
            )
        ],
    )
    with running(b, a):
        a.wait_established("127.0.0.30")
        a.add_route("ipv4", "198.51.100.0/24", "identifier", "1", "nexthop", "198.18.0.29")
        a.add_route(
            "ipv4", "198.51.100.0/24", "identifier", "2", "nexthop", "198.18.0.31", "med", "20"
        )
        a.add_route("ipv4", "203.0.113.0/24", "identifier", "7", "nexthop", "198.18.0.29")
        _wait("both paths at the receiver", lambda: _count_gobgp(b, "ipv4") >= 3)
        time.sleep(SETTLE)
        return {"gobgpd 127.0.0.30 adj-in": _gobgp_view(b, ("ipv4",), "127.0.0.29")}


def scenario_exabgp_gobgp_addpath_vpn(work: Path, port: int) -> dict[str, Any]:
    """iBGP ExaBGP (active) <-> GoBGP (passive), ADD-PATH on VPNv4/VPNv6: two paths per VPN prefix."""
    fams = ("vpnv4", "vpnv6")
    g = GoBGP(
        work / "gobgp",
        "127.0.0.32",
        port,
        65000,
        "198.18.0.32",
        [
            Neighbor(
                "127.0.0.31",
                65000,
                0,
                passive=True,
                families=fams,
                addpath_send=2,
                addpath_receive=True,
            )
        ],
    )
    e = ExaBGP(
        work / "exabgp",
        "127.0.0.31",
        free_port(),
        65000,
        "198.18.0.31",
        [Neighbor("127.0.0.32", 65000, port, families=fams, addpath_send=1, addpath_receive=True)],
    )
    with running(g, e):
        g.wait_established("127.0.0.31")
        for path_id, nh, label in ((1, "198.18.0.41", 900), (2, "198.18.0.42", 901)):
            e.announce(
                f"announce route 192.0.2.0/24 rd 65000:900 label {label} next-hop {nh} "
                f"extended-community [target:65000:900] path-information {path_id}"
            )
        for path_id, nh, label in ((1, "2001:db8:ffff::41", 910), (2, "2001:db8:ffff::42", 911)):
            e.announce(
                f"announce route 2001:db8:900::/48 rd 65000:900 label {label} next-hop {nh} "
                f"extended-community [target:65000:900] path-information {path_id}"
            )
        e.announce(
            "announce route 198.51.100.0/24 rd 198.18.0.31:901 label 902 "
            "next-hop 198.18.0.41 extended-community [target:65000:900] path-information 3"
        )
        g.add_vpnv4(
            "203.0.113.0/24", "65000:950", "65000:950", 950, "198.18.0.32", "encap", "vxlan"
        )
        _wait(
            "GoBGP to hold both paths of each VPN prefix",
            lambda: _count_gobgp(g, "vpnv4") >= 4 and _count_gobgp(g, "vpnv6") >= 2,
        )
        time.sleep(SETTLE)
        return {
            "gobgpd 127.0.0.32 adj-in": _gobgp_view(g, fams, "127.0.0.31"),
            "exabgp 127.0.0.31 received": [m for m in e.received() if m.get("type") == "update"],
        }


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "gobgp_frr_vpn",
        "iBGP GoBGP (127.0.0.21, active) <-> FRR bgpd (127.0.0.22, passive). VPNv4 + VPNv6. "
        "GoBGP: 192.0.2.0/24 RD 65000:100 (type 0) label 100 with RT + encapsulation "
        "ext community (tunnel type 13 MPLS-in-UDP); 192.0.2.0/25 RD 198.18.0.21:101 (type 1); "
        "192.0.2.128/25 RD 4200000000:102 (type 2); 2001:db8:100::/48 RD 65000:100 label 110. "
        "FRR: 198.51.100.0/24 RD 65000:200 label 200, /25s with RD type 1 and type 2, "
        "2001:db8:200::/48 label 210, all with RT 65000:200.",
        ("gobgpd", "frr-bgpd"),
        scenario_gobgp_frr_vpn,
    ),
    Scenario(
        "gobgp_bird_vpn_lu",
        "iBGP GoBGP (127.0.0.23, active) <-> BIRD (127.0.0.24, passive). VPNv4 + VPNv6 + "
        "IPv4 labeled unicast (SAFI 4). GoBGP: 192.0.2.0/24 RD 65000:300 label 300, "
        "2001:db8:300::/48 label 310, labeled 192.0.2.128/25 label 301. BIRD: "
        "198.51.100.0/24 RD 65000:400, /25s RD 198.18.0.24:401 (type 1) and "
        "4200000000:402 (type 2), 2001:db8:400::/48, labeled 203.0.113.0/24; BIRD sends "
        "label 3 (implicit null) for its own routes and an IPv6 next hop 2001:db8:ffff::24 "
        "for VPNv6 over the IPv4 session.",
        ("gobgpd", "bird"),
        scenario_gobgp_bird_vpn_lu,
    ),
    Scenario(
        "frr_bird_vpn_ebgp",
        "eBGP FRR bgpd AS65001 (127.0.0.25, active) <-> BIRD AS65002 (127.0.0.26, passive). "
        "VPNv4 + VPNv6 with non-empty AS_PATH. FRR: 192.0.2.0/24 RD 65001:500 label 500, "
        "192.0.2.64/26 RD 198.18.0.25:501 label 501, 2001:db8:500::/48 label 510. BIRD: "
        "203.0.113.0/24 RD 65000:600, /25s with RD types 1 and 2, 2001:db8:600::/48.",
        ("frr-bgpd", "bird"),
        scenario_frr_bird_vpn_ebgp,
    ),
    Scenario(
        "gobgp_gobgp_rtc",
        "iBGP GoBGP (127.0.0.27, active) <-> GoBGP (127.0.0.28, passive), families RTC "
        "(SAFI 132) + VPNv4. VRFs made with `gobgp vrf add` originate RT-constraint routes "
        "(65000:700 from both, 65000:800 from .27). VPNv4 routes: 192.0.2.0/24 RD 65000:700 "
        "and 203.0.113.0/24 RD 65000:701 cross; 198.51.100.0/24 (RT 65000:800) is "
        "held back by RT constraint.",
        ("gobgpd",),
        scenario_gobgp_gobgp_rtc,
    ),
    Scenario(
        "gobgp_gobgp_addpath",
        "iBGP GoBGP (127.0.0.29, active) -> GoBGP (127.0.0.30, passive), IPv4 unicast with "
        "ADD-PATH send/receive both ways: 198.51.100.0/24 path ids 1 and 2 (next hops "
        "198.18.0.29 and 198.18.0.31, MED 20 on the second), 203.0.113.0/24 (added with "
        "identifier 7; GoBGP numbers the paths it sends itself, so it goes out as path id 1).",
        ("gobgpd",),
        scenario_gobgp_gobgp_addpath,
    ),
    Scenario(
        "exabgp_gobgp_addpath_vpn",
        "iBGP ExaBGP (127.0.0.31, active) <-> GoBGP (127.0.0.32, passive), ADD-PATH on VPNv4 "
        "and VPNv6. ExaBGP: 192.0.2.0/24 RD 65000:900 path ids 1 and 2 (labels 900/901), "
        "2001:db8:900::/48 path ids 1 and 2 (labels 910/911), 198.51.100.0/24 RD "
        "198.18.0.31:901 path id 3. GoBGP: 203.0.113.0/24 RD 65000:950 label 950 with "
        "encapsulation ext community (tunnel type 8 VXLAN), sent with a path id.",
        ("exabgp", "gobgpd"),
        scenario_exabgp_gobgp_addpath_vpn,
    ),
)


# --------------------------------------------------------------------------- main


def capture_one(scenario: Scenario, port: int, work: Path) -> dict[str, Any]:
    """Run one scenario under capture and write its pcap and tshark JSON; return its manifest entry."""
    pcap = VECTORS / f"{scenario.name}.pcap"
    with Capture(pcap, port):
        views = scenario.run(work / scenario.name, port)
    (VECTORS / f"{scenario.name}.rib.json").write_text(json.dumps(views, indent=1) + "\n")
    pcap.chmod(0o644)
    frames = tshark_decode(pcap, port)
    (VECTORS / f"{scenario.name}.tshark.json").write_text(
        json.dumps(
            {"capture": pcap.name, "bgp_port": port, "frames": frames},
            indent=1,
            sort_keys=False,
        )
        + "\n"
    )
    counts = message_counts(frames)
    print(f"{scenario.name}: {pcap.stat().st_size} bytes, {counts}")
    return {
        "name": scenario.name,
        "pcap": pcap.name,
        "tshark": f"{scenario.name}.tshark.json",
        "rib": f"{scenario.name}.rib.json",
        "bgp_port": port,
        "daemons": list(scenario.daemons),
        "description": scenario.description,
        "messages": counts,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="scenarios to capture (default: all)")
    parser.add_argument(
        "--base-port",
        type=int,
        default=17900,
        help="session port of the first scenario; others follow",
    )
    args = parser.parse_args(argv)
    wanted = set(args.names) or {s.name for s in SCENARIOS}
    unknown = wanted - {s.name for s in SCENARIOS}
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}")
    VECTORS.mkdir(parents=True, exist_ok=True)
    manifest_path = VECTORS / "manifest.json"
    manifest: dict[str, Any] = (
        json.loads(manifest_path.read_text()) if manifest_path.exists() else {"captures": []}
    )
    entries = {c["name"]: c for c in manifest.get("captures", [])}
    failures = 0
    with tempfile.TemporaryDirectory(prefix="vpe-capture-") as tmp:
        for index, scenario in enumerate(SCENARIOS):
            if scenario.name not in wanted:
                continue
            try:
                entries[scenario.name] = capture_one(scenario, args.base_port + index, Path(tmp))
            except (DaemonError, subprocess.SubprocessError, OSError) as exc:
                failures += 1
                print(f"{scenario.name}: FAILED: {exc}", file=sys.stderr)
    manifest = {
        "generator": "python tools/capture_vectors.py",
        "versions": versions(),
        "captures": [entries[s.name] for s in SCENARIOS if s.name in entries],
    }
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
