"""The CNI 1.0 side of ``vpe-cni``, pure: the environment, the network
configuration, results and errors (no process, no network, no agent).

CNI (the Container Network Interface specification, 1.0.0): a runtime runs
the plugin with ``CNI_COMMAND`` (ADD, DEL, CHECK, VERSION), ``CNI_CONTAINERID``,
``CNI_NETNS``, ``CNI_IFNAME``, ``CNI_ARGS`` and ``CNI_PATH`` in the
environment and the network configuration on stdin; the plugin writes a
result (ADD), nothing (DEL, CHECK) or its versions (VERSION) on stdout, or an
error object ``{"cniVersion", "code", "msg", "details"}`` with a non-zero exit.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: the versions of the specification this plugin speaks (results are written in the asked one)
SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")
COMMANDS = ("ADD", "DEL", "CHECK", "VERSION")

# error codes of the specification (0-99 are the spec's; 100 and up the plugin's)
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENV = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
#: vpe-cni's own: the agent refused the attachment (its message follows)
AGENT_REFUSED = 100
#: vpe-cni's own: CHECK found the container's network not as ADD left it
CHECK_FAILED = 101
#: vpe-cni's own: a command (ip, nsenter, the IPAM plugin) failed
COMMAND_FAILED = 102

#: a container id (the specification's rule)
_CONTAINER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
#: an interface name the kernel takes (1..15 octets, no '/', ':' or white space)
_IFNAME = re.compile(r"[^/:\s]{1,15}")
#: network names (the specification's rule)
_NET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")


class CniError(Exception):
    """A failure reported to the runtime as the specification's error object."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_json(self, version: str = "1.0.0") -> dict[str, Any]:
        d: dict[str, Any] = {"cniVersion": version, "code": self.code, "msg": self.msg}
        if self.details:
            d["details"] = self.details
        return d


@dataclass(frozen=True)
class Env:
    """The ``CNI_*`` environment of one invocation."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: str = ""
    path: tuple[str, ...] = ()


def parse_env(environ: Mapping[str, str]) -> Env:
    """The invocation's environment, checked as the command needs it (error 4 naming the variable)."""
    cmd = environ.get("CNI_COMMAND", "")
    if cmd not in COMMANDS:
        raise CniError(INVALID_ENV, f"CNI_COMMAND: {cmd!r} is not one of {', '.join(COMMANDS)}")
    env = Env(
        command=cmd,
        container_id=environ.get("CNI_CONTAINERID", ""),
        netns=environ.get("CNI_NETNS", ""),
        ifname=environ.get("CNI_IFNAME", ""),
        args=environ.get("CNI_ARGS", ""),
        path=tuple(p for p in environ.get("CNI_PATH", "").split(":") if p),
    )
    if cmd == "VERSION":
        return env
    if not env.container_id:
        raise CniError(INVALID_ENV, "CNI_CONTAINERID: missing")
    if not _CONTAINER_ID.fullmatch(env.container_id):
        raise CniError(INVALID_ENV, f"CNI_CONTAINERID: {env.container_id!r} is not a container id "
                                    "(a letter or digit, then letters, digits, _ . -)")
    if not env.ifname:
        raise CniError(INVALID_ENV, "CNI_IFNAME: missing")
    if not _IFNAME.fullmatch(env.ifname) or len(env.ifname.encode()) > 15 or env.ifname in (".", ".."):
        raise CniError(INVALID_ENV, f"CNI_IFNAME: {env.ifname!r} is not an interface name (1..15 octets, "
                                    "no '/', ':' or white space)")
    if cmd in ("ADD", "CHECK") and not env.netns:
        raise CniError(INVALID_ENV, f"CNI_NETNS: missing (required for {cmd})")
    return env


@dataclass(frozen=True)
class StaticAddress:
    """An address given in the configuration (``addresses``), instead of an IPAM plugin."""

    address: str
    gateway: str | None = None


@dataclass(frozen=True)
class NetConf:
    """The network configuration vpe-cni reads (see docs/cni.md)."""

    cni_version: str
    name: str
    vpn: str
    agent_socket: str = "/run/vpe/vpe.sock"
    ipam: dict[str, Any] | None = None
    addresses: tuple[StaticAddress, ...] = ()
    routes: tuple[dict[str, Any], ...] = ()
    import_rts: tuple[str, ...] | None = None
    export_rts: tuple[str, ...] | None = None
    advertise: str = "host"
    local_pref: int | None = None
    mtu: int = 1500
    prev_result: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


#: keys of the configuration vpe-cni knows (CNI's own and vpe's); others are refused (error 2)
_KNOWN = {
    "cniVersion", "name", "type", "args", "ipMasq", "ipam", "dns", "prevResult", "runtimeConfig",
    "capabilities", "cniVersions",
    "vpn", "agent_socket", "addresses", "routes", "import_rts", "export_rts", "advertise", "local_pref", "mtu",
}


def _rt_list(d: Mapping[str, Any], key: str) -> tuple[str, ...] | None:
    v = d.get(key)
    if v is None:
        return None
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise CniError(INVALID_CONFIG, f"{key}: a list of route targets (e.g. [\"65000:100\"])")
    return tuple(v)


def parse_version(data: bytes | str) -> str:
    """The ``cniVersion`` of a configuration (for VERSION and for error objects)."""
    try:
        d = json.loads(data or "{}")
    except ValueError:
        return "1.0.0"
    v = d.get("cniVersion") if isinstance(d, dict) else None
    return v if isinstance(v, str) and v else "1.0.0"


def parse_netconf(data: bytes | str, command: str = "ADD") -> NetConf:
    """The network configuration on stdin (error 6 if not JSON, 1 for a version this plugin
    does not speak, 2 for an unknown key, 7 naming the key of a bad value)."""
    try:
        d = json.loads(data)
    except ValueError as e:
        raise CniError(DECODE_FAILURE, f"network configuration: not JSON ({e})") from None
    if not isinstance(d, dict):
        raise CniError(DECODE_FAILURE, "network configuration: not a JSON object")
    version = d.get("cniVersion")
    if not isinstance(version, str) or not version:
        raise CniError(INVALID_CONFIG, "cniVersion: missing")
    if version not in SUPPORTED_VERSIONS:
        raise CniError(INCOMPATIBLE_VERSION, f"cniVersion: {version} is not supported (this plugin speaks "
                                             f"{', '.join(SUPPORTED_VERSIONS)})")
    unknown = sorted(set(d) - _KNOWN)
    if unknown:
        raise CniError(UNSUPPORTED_FIELD, f"{unknown[0]}: not a key vpe-cni knows (see docs/cni.md)")
    name = d.get("name")
    if not isinstance(name, str) or not _NET_NAME.fullmatch(name):
        raise CniError(INVALID_CONFIG, "name: the network's name is required (a letter or digit, then "
                                       "letters, digits, _ . -)")
    vpn = d.get("vpn")
    if not isinstance(vpn, str) or not vpn:
        raise CniError(INVALID_CONFIG, "vpn: the VPN instance to attach to is required")
    sock = d.get("agent_socket", "/run/vpe/vpe.sock")
    if not isinstance(sock, str) or not sock:
        raise CniError(INVALID_CONFIG, "agent_socket: the path of the agent's API socket")
    ipam = d.get("ipam") or None
    if ipam is not None and (not isinstance(ipam, dict) or not isinstance(ipam.get("type"), str)
                             or not ipam["type"] or "/" in ipam["type"]):
        raise CniError(INVALID_CONFIG, "ipam: an object whose 'type' names an IPAM plugin in CNI_PATH")
    addrs = []
    for i, a in enumerate(d.get("addresses") or []):
        if not isinstance(a, dict) or not isinstance(a.get("address"), str):
            raise CniError(INVALID_CONFIG, f"addresses[{i}]: an object {{\"address\": \"IP/LEN\", "
                                           "\"gateway\": \"IP\"}")
        try:
            iface = ipaddress.ip_interface(a["address"])
            gw = a.get("gateway")
            if gw is not None and ipaddress.ip_address(gw).version != iface.version:
                raise ValueError(f"gateway {gw} is not of the address's family")
        except ValueError as e:
            raise CniError(INVALID_CONFIG, f"addresses[{i}]: {e}") from None
        if "/" not in a["address"]:
            raise CniError(INVALID_CONFIG, f"addresses[{i}]: {a['address']!r} needs a prefix length")
        addrs.append(StaticAddress(str(iface), None if gw is None else str(ipaddress.ip_address(gw))))
    if command == "ADD" and ipam is None and not addrs:
        raise CniError(INVALID_CONFIG, "ipam: give an IPAM plugin (e.g. {\"type\": \"host-local\", ...}) "
                                       "or the addresses (\"addresses\": [{\"address\": ...}])")
    if ipam is not None and addrs:
        raise CniError(INVALID_CONFIG, "addresses: give either ipam or addresses, not both")
    routes = d.get("routes") or []
    if not isinstance(routes, list) or not all(isinstance(r, dict) and isinstance(r.get("dst"), str)
                                               for r in routes):
        raise CniError(INVALID_CONFIG, "routes: a list of {\"dst\": \"PREFIX\", \"gw\": \"IP\"}")
    advertise = d.get("advertise", "host")
    if advertise not in ("host", "subnet"):
        raise CniError(INVALID_CONFIG, "advertise: host or subnet")
    lp = d.get("local_pref")
    if lp is not None and (isinstance(lp, bool) or not isinstance(lp, int) or not 0 <= lp <= 0xFFFFFFFF):
        raise CniError(INVALID_CONFIG, "local_pref: an integer 0..4294967295")
    mtu = d.get("mtu", 1500)
    if isinstance(mtu, bool) or not isinstance(mtu, int) or not 576 <= mtu <= 65535:
        raise CniError(INVALID_CONFIG, "mtu: an integer 576..65535")
    prev = d.get("prevResult")
    if prev is not None and not isinstance(prev, dict):
        raise CniError(INVALID_CONFIG, "prevResult: an object (the result of ADD)")
    if command == "CHECK" and prev is None:
        raise CniError(INVALID_CONFIG, "prevResult: CHECK needs the result of ADD")
    return NetConf(
        cni_version=version, name=name, vpn=vpn, agent_socket=sock, ipam=ipam, addresses=tuple(addrs),
        routes=tuple(routes), import_rts=_rt_list(d, "import_rts"), export_rts=_rt_list(d, "export_rts"),
        advertise=advertise, local_pref=lp, mtu=mtu, prev_result=prev, raw=d,
    )


def port_name(container_id: str, ifname: str) -> str:
    """The agent's port of one container interface: stable, within the name rule."""
    return "cni-" + hashlib.sha256(f"{container_id}\0{ifname}".encode()).hexdigest()[:24]


def host_ifname(container_id: str, ifname: str) -> str:
    """The host side of the container's veth: ``vpe`` and 12 hex digits (15 octets)."""
    return "vpe" + hashlib.sha256(f"{container_id}\0{ifname}".encode()).hexdigest()[:12]


@dataclass(frozen=True)
class IpConfig:
    address: str
    gateway: str | None


def ips_of(result: Mapping[str, Any]) -> list[IpConfig]:
    """The addresses of an IPAM (or previous) result (error 7 naming a bad one)."""
    out = []
    for i, ip in enumerate(result.get("ips") or []):
        try:
            addr = str(ipaddress.ip_interface(ip["address"]))
            gw = ip.get("gateway")
            out.append(IpConfig(addr, None if gw is None else str(ipaddress.ip_address(gw))))
        except (KeyError, TypeError, ValueError) as e:
            raise CniError(INVALID_CONFIG, f"ipam result: ips[{i}]: {e}") from None
    return out


def add_result(version: str, *, host_if: str, host_mac: str, ifname: str, mac: str, netns: str,
               ips: list[IpConfig], routes: list[dict[str, Any]], dns: dict[str, Any] | None) -> dict[str, Any]:
    """The result of ADD in the specification's shape of ``version`` (interface 1 is the container's)."""
    res_ips = []
    for ip in ips:
        e: dict[str, Any] = {"address": ip.address, "interface": 1}
        if ip.gateway:
            e["gateway"] = ip.gateway
        if version in ("0.3.0", "0.3.1", "0.4.0"):
            e["version"] = "4" if ipaddress.ip_interface(ip.address).version == 4 else "6"
        res_ips.append(e)
    out: dict[str, Any] = {
        "cniVersion": version,
        "interfaces": [{"name": host_if, "mac": host_mac}, {"name": ifname, "mac": mac, "sandbox": netns}],
        "ips": res_ips,
        "routes": routes,
    }
    if dns:
        out["dns"] = dns
    return out


def default_routes(ips: list[IpConfig]) -> list[dict[str, Any]]:
    """A default route per family through its gateway (when the IPAM result gives none)."""
    out = []
    seen = set()
    for ip in ips:
        fam = ipaddress.ip_interface(ip.address).version
        if ip.gateway and fam not in seen:
            seen.add(fam)
            out.append({"dst": "0.0.0.0/0" if fam == 4 else "::/0", "gw": ip.gateway})
    return out


def version_result(version: str = "1.0.0") -> dict[str, Any]:
    return {"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)}
