"""``vpe-cni``: a CNI 1.0 plugin attaching a container's network namespace to a VPN
instance of the local vpe agent (docs/cni.md).

ADD: the IPAM plugin named in the configuration (``ipam``, e.g. the
reference ``host-local``, run from ``CNI_PATH`` with the same environment
and configuration) or the configuration's ``addresses`` give the addresses;
a veth pair is created with ``CNI_IFNAME`` inside the container's namespace
(addresses, routes, offloads off for the userspace forwarder) and a host
side ``vpe<12 hex>``; the agent (its Unix socket, ``agent_socket``) attaches
the host side to the VPN instance ``vpn`` as port ``cni-<24 hex>``, answering
ARP/ND for the gateways. A failure undoes what was done (veth, IPAM).

DEL: the port detached, the veth deleted, the IPAM allocation released;
what is already gone is skipped, so a second DEL succeeds too. CHECK: the
container interface carries the addresses of ``prevResult``, the host side
exists, the agent holds the port with those addresses in ``vpn``, and the
IPAM plugin's CHECK passes. VERSION: the versions spoken.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from .spec import (
    AGENT_REFUSED,
    CHECK_FAILED,
    COMMAND_FAILED,
    INCOMPATIBLE_VERSION,
    INVALID_CONFIG,
    IO_FAILURE,
    TRY_AGAIN_LATER,
    UNKNOWN_CONTAINER,
    CniError,
    Env,
    IpConfig,
    NetConf,
    add_result,
    default_routes,
    host_ifname,
    ips_of,
    parse_env,
    parse_netconf,
    parse_version,
    port_name,
    version_result,
)

#: seconds an ip/nsenter command, the IPAM plugin, or an agent request may take
COMMAND_TIMEOUT = 20.0


def _run(argv: Sequence[str], *, stdin: bytes | None = None, env: Mapping[str, str] | None = None,
         check: bool = True) -> subprocess.CompletedProcess[bytes]:
    try:
        r = subprocess.run(list(argv), input=stdin, capture_output=True, timeout=COMMAND_TIMEOUT,
                           env=None if env is None else dict(env))
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CniError(COMMAND_FAILED, f"{argv[0]}: {e}") from None
    if check and r.returncode != 0:
        raise CniError(COMMAND_FAILED, f"{' '.join(argv)}: exit {r.returncode}",
                       r.stderr.decode(errors="replace").strip())
    return r


class Plugin:
    """One invocation: the environment and the network configuration."""

    def __init__(self, env: Env, conf: NetConf, environ: Mapping[str, str] | None = None) -> None:
        self.env = env
        self.conf = conf
        self.environ = dict(os.environ if environ is None else environ)
        self.port = port_name(env.container_id, env.ifname)
        self.host_if = host_ifname(env.container_id, env.ifname)

    # -- helpers ------------------------------------------------------------------------

    def _in_ns(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return _run(["nsenter", f"--net={self.env.netns}", *argv], check=check)

    def _mac(self, ifname: str, in_container: bool) -> str:
        argv = ["ip", "-j", "link", "show", "dev", ifname]
        r = self._in_ns(*argv) if in_container else _run(argv)
        return str(json.loads(r.stdout)[0]["address"])

    def _host_if_exists(self) -> bool:
        return Path("/sys/class/net", self.host_if).exists()

    def _agent(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        sock = self.conf.agent_socket
        try:
            with httpx.Client(transport=httpx.HTTPTransport(uds=sock), timeout=COMMAND_TIMEOUT) as c:
                return c.request(method, f"http://vpe{path}", json=body)
        except (httpx.HTTPError, OSError) as e:
            raise CniError(TRY_AGAIN_LATER, f"agent_socket: the vpe agent at {sock} does not answer: {e}") from None

    def _ipam(self, command: str) -> dict[str, Any]:
        """Run the IPAM plugin (found in CNI_PATH) with ``command`` and this configuration."""
        assert self.conf.ipam is not None
        kind = self.conf.ipam["type"]
        exe = next((Path(d, kind) for d in self.env.path if Path(d, kind).is_file()), None)
        if exe is None:
            raise CniError(INVALID_CONFIG, f"ipam.type: no IPAM plugin {kind!r} in CNI_PATH "
                                           f"({':'.join(self.env.path) or 'empty'})")
        env = dict(self.environ, CNI_COMMAND=command)
        r = _run([str(exe)], stdin=json.dumps(self.conf.raw).encode(), env=env, check=False)
        out = r.stdout.decode(errors="replace").strip()
        if r.returncode != 0:
            try:
                err = json.loads(out)
                raise CniError(int(err.get("code", COMMAND_FAILED)), f"ipam ({kind}): {err.get('msg', out)}",
                               str(err.get("details", "")))
            except (ValueError, AttributeError):
                raise CniError(COMMAND_FAILED, f"ipam ({kind}): exit {r.returncode}",
                               (out + " " + r.stderr.decode(errors="replace")).strip()) from None
        if command != "ADD":
            return {}
        try:
            res = json.loads(out)
        except ValueError:
            raise CniError(COMMAND_FAILED, f"ipam ({kind}): the result is not JSON", out) from None
        if not isinstance(res, dict):
            raise CniError(COMMAND_FAILED, f"ipam ({kind}): the result is not an object", out)
        return res

    # -- ADD -----------------------------------------------------------------------------

    def add(self) -> dict[str, Any]:
        env, conf = self.env, self.conf
        if not Path(env.netns).exists():
            raise CniError(UNKNOWN_CONTAINER, f"CNI_NETNS: {env.netns} does not exist")
        if conf.ipam is not None:
            res = self._ipam("ADD")
            ips = ips_of(res)
            routes = [dict(r) for r in res.get("routes") or []]
            dns = res.get("dns") or conf.raw.get("dns")
        else:
            ips = [IpConfig(a.address, a.gateway) for a in conf.addresses]
            routes, dns = [], conf.raw.get("dns")
        routes += [dict(r) for r in conf.routes]
        if not ips:
            self._undo_ipam()
            raise CniError(INVALID_CONFIG, "ipam: the IPAM plugin gave no address")
        routes = self._with_gateways(routes, ips)
        created = False
        try:
            self._make_veth()
            created = True
            self._configure_container(ips, routes)
            host_mac, mac = self._mac(self.host_if, False), self._mac(env.ifname, True)
            self._attach(mac, ips)
        except BaseException:
            if created:
                _run(["ip", "link", "del", self.host_if], check=False)
            self._undo_ipam()
            raise
        return add_result(conf.cni_version, host_if=self.host_if, host_mac=host_mac, ifname=env.ifname, mac=mac,
                          netns=env.netns, ips=ips, routes=routes, dns=dns)

    def _undo_ipam(self) -> None:
        if self.conf.ipam is not None:
            try:
                self._ipam("DEL")
            except CniError as e:
                print(f"vpe-cni: releasing the IPAM allocation after a failed ADD: {e.msg}", file=sys.stderr)

    @staticmethod
    def _with_gateways(routes: list[dict[str, Any]], ips: list[IpConfig]) -> list[dict[str, Any]]:
        """Routes without ``gw`` go through their family's gateway; none at all: default routes."""
        if not routes:
            return default_routes(ips)
        gws = {ipaddress.ip_interface(i.address).version: i.gateway for i in ips if i.gateway}
        out = []
        for r in routes:
            try:
                fam = ipaddress.ip_network(r["dst"], strict=False).version
            except ValueError as e:
                raise CniError(INVALID_CONFIG, f"routes: {e}") from None
            gw = r.get("gw") or gws.get(fam)
            out.append({"dst": r["dst"], **({"gw": gw} if gw else {})})
        return out

    def _make_veth(self) -> None:
        env, mtu = self.env, str(self.conf.mtu)
        if self._host_if_exists():
            raise CniError(AGENT_REFUSED, f"interface {self.host_if} exists already: container {env.container_id} "
                                          f"interface {env.ifname} was added before (DEL it first)")
        if self._in_ns("ip", "link", "show", "dev", env.ifname, check=False).returncode == 0:
            raise CniError(INVALID_CONFIG, f"CNI_IFNAME: {env.ifname} exists already in {env.netns}")
        # made inside the container's namespace, its peer sent to ours (this process's)
        self._in_ns("ip", "link", "add", env.ifname, "mtu", mtu, "type", "veth", "peer", "name", self.host_if,
                    "mtu", mtu, "netns", str(os.getpid()))
        # the host side belongs to the forwarder: the host kernel sends nothing on it
        for key, val in (("ipv6/conf/{}/disable_ipv6", "1"), ("ipv4/conf/{}/rp_filter", "0")):
            with contextlib.suppress(OSError):
                Path("/proc/sys/net", key.format(self.host_if)).write_text(val)
        _run(["ip", "link", "set", self.host_if, "up"])

    def _configure_container(self, ips: list[IpConfig], routes: list[dict[str, Any]]) -> None:
        ifname = self.env.ifname
        self._in_ns("ip", "link", "set", "lo", "up")
        # frames cross a userspace forwarder: they must leave the container complete
        self._in_ns(sys.executable, "-m", "vpe.dataplane.userspace.offload", ifname)
        for ip in ips:
            extra = ["nodad"] if ipaddress.ip_interface(ip.address).version == 6 else []
            self._in_ns("ip", "addr", "add", ip.address, "dev", ifname, *extra)
        self._in_ns("ip", "link", "set", ifname, "up")
        for r in routes:
            fam = "-6" if ipaddress.ip_network(r["dst"], strict=False).version == 6 else "-4"
            argv = ["ip", fam, "route", "replace", r["dst"], "dev", ifname]
            if r.get("gw"):
                argv += ["via", r["gw"]]
            self._in_ns(*argv)

    def _attach(self, mac: str, ips: list[IpConfig]) -> None:
        conf, env = self.conf, self.env
        body: dict[str, Any] = {
            "name": self.port, "ifname": self.host_if, "vpn": conf.vpn, "mac": mac,
            "ips": [i.address for i in ips],
            "gateways": list(dict.fromkeys(i.gateway for i in ips if i.gateway)),
            "advertise": conf.advertise, "local_pref": conf.local_pref,
            "description": f"CNI network {conf.name}: container {env.container_id[:64]} {env.ifname}"[:256],
        }
        if conf.import_rts is not None:
            body["import_rts"] = list(conf.import_rts)
        if conf.export_rts is not None:
            body["export_rts"] = list(conf.export_rts)
        r = self._agent("POST", "/v1/ports", body)
        if r.status_code != 201:
            raise CniError(AGENT_REFUSED, f"the vpe agent refused port {self.port} ({r.status_code}): "
                                          f"{_detail(r)}")

    # -- DEL -----------------------------------------------------------------------------

    def delete(self) -> None:
        r = self._agent("DELETE", f"/v1/ports/{self.port}")
        if r.status_code not in (204, 404):
            raise CniError(AGENT_REFUSED, f"the vpe agent did not detach port {self.port} ({r.status_code}): "
                                          f"{_detail(r)}")
        if self._host_if_exists():
            _run(["ip", "link", "del", self.host_if], check=False)
        if self.env.netns and Path(self.env.netns).exists():  # a container-side leftover
            self._in_ns("ip", "link", "del", self.env.ifname, check=False)
        if self.conf.ipam is not None:
            self._ipam("DEL")

    # -- CHECK ---------------------------------------------------------------------------

    def check(self) -> None:
        env, conf = self.env, self.conf
        if conf.cni_version in ("0.3.0", "0.3.1"):
            raise CniError(INCOMPATIBLE_VERSION, f"cniVersion: CHECK needs 0.4.0 or later, not {conf.cni_version}")
        if not Path(env.netns).exists():
            raise CniError(UNKNOWN_CONTAINER, f"CNI_NETNS: {env.netns} does not exist")
        assert conf.prev_result is not None
        want = {i.address for i in ips_of(conf.prev_result)}
        r = self._in_ns("ip", "-j", "addr", "show", "dev", env.ifname, check=False)
        if r.returncode != 0:
            raise CniError(CHECK_FAILED, f"CNI_IFNAME: no interface {env.ifname} in {env.netns}")
        have = {f"{a['local']}/{a['prefixlen']}" for link in json.loads(r.stdout or b"[]")
                for a in link.get("addr_info", []) if a.get("scope") != "link"}
        have = {str(ipaddress.ip_interface(a)) for a in have}
        if not want <= have:
            raise CniError(CHECK_FAILED, f"{env.ifname} in {env.netns} lacks {', '.join(sorted(want - have))} "
                                         f"(it has {', '.join(sorted(have)) or 'none'})")
        if not self._host_if_exists():
            raise CniError(CHECK_FAILED, f"the host side {self.host_if} of {env.ifname} is gone")
        a = self._agent("GET", f"/v1/ports/{self.port}")
        if a.status_code != 200:
            raise CniError(CHECK_FAILED, f"the vpe agent has no port {self.port} ({a.status_code}: {_detail(a)})")
        port = a.json()
        if port.get("vrf") != conf.vpn or port.get("ifname") != self.host_if:
            raise CniError(CHECK_FAILED, f"port {self.port} is {port.get('ifname')} in VPN instance "
                                         f"{port.get('vrf')!r}, not {self.host_if} in {conf.vpn!r}")
        if {str(ipaddress.ip_interface(x)) for x in port.get("ips", [])} != want:
            raise CniError(CHECK_FAILED, f"port {self.port} has {', '.join(port.get('ips', []))}, the result "
                                         f"of ADD {', '.join(sorted(want))}")
        if conf.ipam is not None:
            self._ipam("CHECK")


def _detail(r: httpx.Response) -> str:
    try:
        d = r.json()
    except ValueError:
        return r.text[:500]
    return str(d.get("detail", d)) if isinstance(d, dict) else str(d)


def run(stdin: bytes, environ: Mapping[str, str]) -> tuple[int, dict[str, Any] | None]:
    """One invocation: (exit status, what goes to stdout)."""
    version = parse_version(stdin)
    try:
        env = parse_env(environ)
        if env.command == "VERSION":
            return 0, version_result(version)
        conf = parse_netconf(stdin, env.command)
        plugin = Plugin(env, conf, environ)
        if env.command == "ADD":
            return 0, plugin.add()
        if env.command == "DEL":
            plugin.delete()
        else:
            plugin.check()
        return 0, None
    except CniError as e:
        return 1, e.to_json(version)
    except Exception as e:  # a bug: still the specification's error object
        return 1, CniError(IO_FAILURE, f"vpe-cni: {type(e).__name__}: {e}").to_json(version)


def main() -> int:
    code, out = run(sys.stdin.buffer.read(), os.environ)
    if out is not None:
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
