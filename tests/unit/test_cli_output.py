"""The CLI's output rules and its pure helpers (issue 16): piped tables are never cut,
errors are one line, family names short or long, shell completion, the best-path reason."""

from __future__ import annotations

import os
import subprocess
import sys
from ipaddress import IPv4Address

import pytest
import typer
from rich.table import Table

from vpe.bgp.wire.attributes.as_path import AsPath
from vpe.bgp.wire.attributes.base import PathAttributes
from vpe.bgp.wire.attributes.origin import Origin
from vpe.bgp.wire.attributes.simple import LocalPref
from vpe.bgp.wire.constants import (
    IPV4_LABELED,
    IPV4_MCAST_VPN,
    IPV4_UNICAST,
    RTC,
    VPNV4,
    family_from_name,
)
from vpe.bgp.wire.nlri.vpn import VPNv4Prefix
from vpe.cli import output
from vpe.rib.decision import DecisionOptions, best_path_reason, compute_rank
from vpe.rib.path import Path, PeerInfo


def test_short_and_full_family_names() -> None:
    assert family_from_name("ipv4") == family_from_name("ipv4-unicast") == IPV4_UNICAST
    assert family_from_name("ipv4-lu") == IPV4_LABELED
    assert family_from_name("VPNv4") == VPNV4
    assert family_from_name("rtc") == RTC and family_from_name("mvpn") == IPV4_MCAST_VPN
    with pytest.raises(ValueError, match="unknown family 'vpnv9'.*ipv4-lu"):
        family_from_name("vpnv9")


def test_plain_table_keeps_every_value_whole() -> None:
    long = "198.18.0.11:3:192.0.2.128/25 " * 3
    text = output.plain_table(["Route", "State"], [[long.strip(), "Established"], ["x", None]])
    lines = text.splitlines()
    assert lines[1].startswith(long.strip()) and lines[1].endswith("Established")
    assert lines[2].split() == ["x", "-"]
    assert all(line == line.rstrip() for line in lines)


def test_rich_table_is_plain_when_piped(capsys: pytest.CaptureFixture[str]) -> None:
    t = Table("Neighbor", "State", title="sessions")
    t.add_row("127.0.0.2", "Established")
    output.console.print(t)  # capsys: stdout is not a terminal
    out = capsys.readouterr().out
    assert out.splitlines() == ["sessions", "Neighbor   State", "127.0.0.2  Established"]


def test_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as e:
        output.fail("vpn: no VPN instance 'x'\n  (known:\n  a, b)" + " word" * 40, 1)
    assert e.value.exit_code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: vpn: no VPN instance 'x' (known: a, b) word")


def test_human_duration() -> None:
    assert output.human_duration(None) == "never"
    assert output.human_duration(3725) == "01:02:05"
    assert output.human_duration(2 * 86400 + 3 * 3600 + 60) == "2d03h01m"
    assert output.human_duration(9 * 86400) == "1w2d00h"


def test_shell_completion_of_commands_and_families() -> None:
    """Completion as bash asks for it, through the real entry point."""
    env = {**os.environ, "_VPE_COMPLETE": "complete_bash", "COMP_WORDS": "vpe show bgp routes --family vp",
           "COMP_CWORD": "5"}
    code = "from vpe.cli.main import app; app(prog_name=\"vpe\")"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30,
                       check=False)
    assert r.returncode == 0 and r.stdout.split() == ["vpnv4", "vpnv6"], r
    env.update(COMP_WORDS="vpe bgp s", COMP_CWORD="2")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30,
                       check=False)
    assert set(r.stdout.split()) == {"soft-reset", "shutdown"}, r
    env.update(COMP_WORDS="vpe show bgp ", COMP_CWORD="3")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30,
                       check=False)
    assert {"summary", "neighbors", "received-routes", "advertised-routes", "routes", "route"} <= set(r.stdout.split())


def _path(peer: str, lp: int, asns: tuple[int, ...] = ()) -> Path:
    info = PeerInfo(IPv4Address(peer), IPv4Address(peer), 65000, ibgp=True)
    attrs = PathAttributes([Origin(0), AsPath.sequence(*asns) if asns else AsPath(()), LocalPref(lp)])
    return Path.make(info, VPNv4Prefix.from_parts("65000:1", "192.0.2.0/24", [16]), attrs, IPv4Address("198.18.0.5"))


def test_best_path_reason_names_the_deciding_step() -> None:
    def rank(s):  # type: ignore[no-untyped-def]
        return compute_rank(s, DecisionOptions())

    a, b, c = _path("127.0.0.2", 200), _path("127.0.0.3", 100), _path("127.0.0.4", 200, (65001,))
    assert best_path_reason(a, [a], rank)["step"] == "only_path"
    assert best_path_reason(a, [a, b], rank)["step"] == "local_pref"
    # against the runner-up c (same LOCAL_PREF), the AS_PATH decided
    r = best_path_reason(a, [a, b, c], rank)
    assert r["step"] == "as_path_length" and "AS_PATH" in r["text"]
    d = _path("127.0.0.9", 200)
    assert best_path_reason(a, [a, d], rank)["step"] == "router_id"


def test_configuration_accepts_short_family_names() -> None:
    from vpe.agent.config import ConfigError, parse_config

    cfg = parse_config('[bgp]\nlocal_as = 65000\nrouter_id = "198.18.0.1"\n'
                       '[[neighbors]]\naddress = "127.0.0.2"\nfamilies = ["vpnv4", "ipv4-lu", "mvpn"]\n')
    assert cfg.neighbors[0].families == ["vpnv4", "ipv4-labeled-unicast", "ipv4-mcast-vpn"]
    with pytest.raises(ConfigError, match="vpnv9"):
        parse_config('[bgp]\nlocal_as = 65000\nrouter_id = "198.18.0.1"\n'
                     '[[neighbors]]\naddress = "127.0.0.2"\nfamilies = ["vpnv9"]\n')
