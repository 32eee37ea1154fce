"""vpe-cni's CNI side without a network: the environment, the network
configuration, results and error objects (vpe.cni.spec), and whole
invocations that fail before touching anything (vpe.cni.plugin.run)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from vpe.cni import spec
from vpe.cni.plugin import run
from vpe.cni.spec import CniError, IpConfig, parse_env, parse_netconf

ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "abc123", "CNI_NETNS": "/var/run/netns/x",
       "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin:/usr/lib/cni"}


def conf(**over: Any) -> bytes:
    d: dict[str, Any] = {"cniVersion": "1.0.0", "name": "blue-net", "type": "vpe-cni", "vpn": "blue",
                         "ipam": {"type": "host-local", "subnet": "192.0.2.0/24"}}
    d.update(over)
    return json.dumps({k: v for k, v in d.items() if v is not None}).encode()


def test_env() -> None:
    env = parse_env(ENV)
    assert env.command == "ADD" and env.path == ("/opt/cni/bin", "/usr/lib/cni")
    assert parse_env({"CNI_COMMAND": "VERSION"}).command == "VERSION"
    dele = parse_env({**ENV, "CNI_COMMAND": "DEL", "CNI_NETNS": ""})  # DEL without a namespace is fine
    assert dele.netns == ""


@pytest.mark.parametrize(("env", "var"), [
    ({"CNI_COMMAND": "GET"}, "CNI_COMMAND"),
    ({"CNI_CONTAINERID": ""}, "CNI_CONTAINERID"),
    ({"CNI_CONTAINERID": "-bad"}, "CNI_CONTAINERID"),
    ({"CNI_IFNAME": ""}, "CNI_IFNAME"),
    ({"CNI_IFNAME": "a-very-long-ifname"}, "CNI_IFNAME"),
    ({"CNI_IFNAME": "eth/0"}, "CNI_IFNAME"),
    ({"CNI_NETNS": ""}, "CNI_NETNS"),
])
def test_env_errors_name_the_variable(env: dict[str, str], var: str) -> None:
    with pytest.raises(CniError) as e:
        parse_env({**ENV, **env})
    assert e.value.code == spec.INVALID_ENV and e.value.msg.startswith(f"{var}: ")


def test_netconf() -> None:
    c = parse_netconf(conf(local_pref=300, import_rts=["65000:1"], mtu=1400))
    assert c.vpn == "blue" and c.ipam == {"type": "host-local", "subnet": "192.0.2.0/24"}
    assert c.local_pref == 300 and c.import_rts == ("65000:1",) and c.export_rts is None and c.mtu == 1400
    assert c.agent_socket == "/run/vpe/vpe.sock"
    s = parse_netconf(conf(ipam=None, addresses=[{"address": "192.0.2.5/24", "gateway": "192.0.2.1"},
                                                 {"address": "2001:db8::5/64"}]))
    assert s.addresses == (spec.StaticAddress("192.0.2.5/24", "192.0.2.1"), spec.StaticAddress("2001:db8::5/64"))
    # DEL needs no addresses; CHECK needs the previous result
    assert parse_netconf(conf(ipam=None), "DEL").ipam is None
    assert parse_netconf(conf(prevResult={"ips": []}), "CHECK").prev_result == {"ips": []}


@pytest.mark.parametrize(("data", "code", "field"), [
    (b"{nope", spec.DECODE_FAILURE, "network configuration"),
    (b"[1]", spec.DECODE_FAILURE, "network configuration"),
    (conf(cniVersion=None), spec.INVALID_CONFIG, "cniVersion"),
    (conf(cniVersion="2.0.0"), spec.INCOMPATIBLE_VERSION, "cniVersion"),
    (conf(color="red"), spec.UNSUPPORTED_FIELD, "color"),
    (conf(name="bad name"), spec.INVALID_CONFIG, "name"),
    (conf(vpn=""), spec.INVALID_CONFIG, "vpn"),
    (conf(ipam={"type": "../x"}), spec.INVALID_CONFIG, "ipam"),
    (conf(ipam=None), spec.INVALID_CONFIG, "ipam"),
    (conf(addresses=[{"address": "192.0.2.5/24"}]), spec.INVALID_CONFIG, "addresses"),
    (conf(ipam=None, addresses=[{"address": "192.0.2.5"}]), spec.INVALID_CONFIG, "addresses[0]"),
    (conf(ipam=None, addresses=[{"address": "192.0.2.5/24", "gateway": "2001:db8::1"}]), spec.INVALID_CONFIG,
     "addresses[0]"),
    (conf(ipam=None, addresses=["192.0.2.5/24"]), spec.INVALID_CONFIG, "addresses[0]"),
    (conf(routes=[{"gw": "192.0.2.1"}]), spec.INVALID_CONFIG, "routes"),
    (conf(advertise="all"), spec.INVALID_CONFIG, "advertise"),
    (conf(local_pref=-1), spec.INVALID_CONFIG, "local_pref"),
    (conf(mtu=100), spec.INVALID_CONFIG, "mtu"),
    (conf(import_rts="65000:1"), spec.INVALID_CONFIG, "import_rts"),
    (conf(prevResult=[1]), spec.INVALID_CONFIG, "prevResult"),
])
def test_netconf_errors(data: bytes, code: int, field: str) -> None:
    with pytest.raises(CniError) as e:
        parse_netconf(data)
    assert e.value.code == code and e.value.msg.startswith(f"{field}: "), e.value.msg


def test_check_needs_prev_result() -> None:
    with pytest.raises(CniError, match="^prevResult: "):
        parse_netconf(conf(), "CHECK")


def test_names_are_stable_and_fit() -> None:
    a, b = spec.port_name("c" * 64, "eth0"), spec.port_name("c" * 64, "eth1")
    assert a != b and a == spec.port_name("c" * 64, "eth0") and len(a) <= 64 and a.startswith("cni-")
    h = spec.host_ifname("c" * 64, "eth0")
    assert len(h) == 15 and h.startswith("vpe")


def test_results() -> None:
    ips = [IpConfig("192.0.2.40/24", "192.0.2.1"), IpConfig("2001:db8::40/64", None)]
    routes = spec.default_routes(ips)
    assert routes == [{"dst": "0.0.0.0/0", "gw": "192.0.2.1"}]
    r = spec.add_result("1.0.0", host_if="vpe0", host_mac="02:00:00:00:00:01", ifname="eth0",
                        mac="02:00:00:00:00:02", netns="/var/run/netns/x", ips=ips, routes=routes,
                        dns={"nameservers": ["192.0.2.53"]})
    assert r == {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "vpe0", "mac": "02:00:00:00:00:01"},
                       {"name": "eth0", "mac": "02:00:00:00:00:02", "sandbox": "/var/run/netns/x"}],
        "ips": [{"address": "192.0.2.40/24", "interface": 1, "gateway": "192.0.2.1"},
                {"address": "2001:db8::40/64", "interface": 1}],
        "routes": routes,
        "dns": {"nameservers": ["192.0.2.53"]},
    }
    old = spec.add_result("0.4.0", host_if="vpe0", host_mac="m", ifname="eth0", mac="m", netns="n", ips=ips,
                          routes=[], dns=None)
    assert [i["version"] for i in old["ips"]] == ["4", "6"] and "dns" not in old
    assert spec.ips_of({"ips": [{"address": "192.0.2.40/24", "gateway": "192.0.2.1"}]}) == [ips[0]]
    with pytest.raises(CniError, match=r"ips\[0\]"):
        spec.ips_of({"ips": [{"address": "nope"}]})


def test_run_version_and_errors() -> None:
    code, out = run(b'{"cniVersion": "0.4.0"}', {"CNI_COMMAND": "VERSION"})
    assert code == 0 and out == {"cniVersion": "0.4.0", "supportedVersions": list(spec.SUPPORTED_VERSIONS)}
    code, out = run(conf(), {**ENV, "CNI_COMMAND": "NOPE"})
    assert code == 1 and out == {"cniVersion": "1.0.0", "code": 4,
                                 "msg": "CNI_COMMAND: 'NOPE' is not one of ADD, DEL, CHECK, VERSION"}
    code, out = run(conf(cniVersion="0.4.0", color=1), ENV)
    assert code == 1 and out is not None and out["cniVersion"] == "0.4.0" and out["code"] == 2
    # ADD into a namespace that does not exist: error 3, nothing run
    code, out = run(conf(ipam=None, addresses=[{"address": "192.0.2.5/24"}]),
                    {**ENV, "CNI_NETNS": "/nonexistent/netns/x"})
    assert code == 1 and out is not None and out["code"] == spec.UNKNOWN_CONTAINER and "CNI_NETNS" in out["msg"]
    # DEL with the agent's socket absent: try again later, naming agent_socket
    code, out = run(conf(agent_socket="/nonexistent/vpe.sock"), {**ENV, "CNI_COMMAND": "DEL"})
    assert code == 1 and out is not None and out["code"] == spec.TRY_AGAIN_LATER
    assert out["msg"].startswith("agent_socket: ")
