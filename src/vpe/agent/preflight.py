"""The checks of a configuration against this host, done before the agent starts.

A schema-valid configuration can still not work here: a ``state_dir`` that
is a file or cannot be created or written, a socket directory that cannot be
made, a socket group that does not exist, TLS files that do not load, a
``listen`` address that is not an address of this host, a port in use.
Each is reported as one line ``FILE: KEY: REASON`` (:class:`ConfigError`;
``vpe agent`` exits 2), all of them at once, before anything is changed.
"""

from __future__ import annotations

import errno
import grp
import os
import socket
import ssl
import tempfile
from pathlib import Path

from .config import AgentConfig, ConfigError, tcp_address


def _dir_problem(path: Path, what: str) -> str | None:
    """Why ``path`` cannot serve as a directory the agent writes in, else None."""
    if path.exists() and not path.is_dir():
        return f"{path} exists and is not a directory"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return f"cannot create {what} {path}: {e.strerror}"
    try:
        fd, name = tempfile.mkstemp(prefix=".vpe-write-check-", dir=path)
    except OSError as e:
        return f"{what} {path} is not writable: {e.strerror}"
    os.close(fd)
    os.unlink(name)
    return None


def bind_problem(host: str, port: int, what: str) -> str | None:
    """Why a TCP listener on (host, port) cannot be opened here, else None (the probe is closed)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the real listener
        s.bind((host, port))
        s.listen(1)
    except OSError as e:
        if e.errno == errno.EADDRNOTAVAIL:
            return f"{host} is not an address of this host"
        if e.errno == errno.EADDRINUSE:
            return f"{what} {host} port {port} is in use by another process"
        if e.errno == errno.EACCES:
            return f"{what} {host} port {port}: permission denied (ports below 1024 need root " \
                   "or CAP_NET_BIND_SERVICE)"
        return f"{what} {host} port {port}: {e.strerror}"
    finally:
        s.close()
    return None


def host_errors(cfg: AgentConfig) -> list[tuple[str, str]]:
    """(key, reason) of every way ``cfg`` cannot work on this host."""
    out: list[tuple[str, str]] = []
    why = _dir_problem(Path(cfg.state_dir), "state_dir")
    if why:
        out.append(("state_dir", why))
    sock_dir = Path(cfg.api.socket).parent
    why = _dir_problem(sock_dir, "the socket's directory")
    if why:
        out.append(("api.socket", why))
    elif Path(cfg.api.socket).exists() and not Path(cfg.api.socket).is_socket():
        out.append(("api.socket", f"{cfg.api.socket} exists and is not a socket; refusing to remove it"))
    if cfg.api.socket_group is not None:
        try:
            grp.getgrnam(cfg.api.socket_group)
        except KeyError:
            out.append(("api.socket_group", f"no group {cfg.api.socket_group!r} on this host"))
    if cfg.api.tls_cert is not None and cfg.api.tls_key is not None:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cfg.api.tls_cert,
                                                                                 cfg.api.tls_key)
        except (OSError, ssl.SSLError) as e:
            out.append(("api.tls_cert", f"cannot load {cfg.api.tls_cert} with key {cfg.api.tls_key}: "
                                        f"{getattr(e, 'strerror', None) or e}"))
    for i, addr in enumerate(cfg.bgp.listen):
        why = bind_problem(addr, cfg.bgp.port, "BGP")
        if why:
            out.append((f"bgp.listen.{i}" if "not an address" in why else "bgp.port", why))
    if cfg.api.tcp:
        host, port = tcp_address(cfg.api.tcp)
        why = bind_problem(host, port, "API")
        if why:
            out.append(("api.tcp", why))
    if cfg.bagpipe_compat.enabled:
        host, port = tcp_address(cfg.bagpipe_compat.listen)
        why = bind_problem(host, port, "bagpipe-bgp compatibility")
        if why:
            out.append(("bagpipe_compat.listen", why))
    return out


def check_host(cfg: AgentConfig, source: str) -> None:
    """:class:`ConfigError` listing every problem of ``cfg`` on this host (one line each)."""
    problems = host_errors(cfg)
    if problems:
        raise ConfigError("\n".join(f"{source}: {key}: {why}" for key, why in problems))


__all__ = ["bind_problem", "check_host", "host_errors"]
