"""Where the CLI's requests go: the agent's Unix socket, or its TCP API with the token.

``vpe --api https://HOST:PORT --token-file FILE ...`` (or the environment
variables ``VPE_API`` and ``VPE_TOKEN``) reaches an agent over TCP with its
bearer token (``[api] tcp`` and ``token`` of that agent); over HTTPS the
certificate is verified against the system's CAs, or against ``--ca FILE``
(``VPE_CA``). Without ``--api`` the CLI talks to the Unix socket
(``--socket``, ``VPE_SOCKET``), where file permissions are the credentials.

Every way a connection can fail becomes one :class:`Unreachable` message
naming the target and the cause (refused, timed out, TLS verification,
plain HTTP to a TLS listener), and a 401 one naming the token's source.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx


class TargetError(ValueError):
    """A bad ``--api``/``--token-file``/``--ca`` (a usage error; the message names the option)."""


class Unreachable(Exception):
    """The agent cannot be reached; the message names where and why."""


@dataclass(frozen=True)
class Target:
    """One agent's API: a Unix socket path, or a base URL with a token (and a CA file)."""

    socket: str | None = None
    url: str | None = None
    token: str | None = None
    #: where the token came from, for messages (never the token itself)
    token_source: str = ""
    ca: str | None = None

    @property
    def where(self) -> str:
        return self.url if self.url is not None else f"{self.socket}"

    def client(self, timeout: float = 30.0) -> httpx.Client:
        """An HTTP client whose relative URLs (``/v1/...``) reach the agent."""
        if self.url is None:
            assert self.socket is not None
            # plain HTTP over the socket: no CA bundle to load
            return httpx.Client(transport=httpx.HTTPTransport(uds=self.socket, verify=False),
                                base_url="http://vpe", timeout=timeout)
        verify: ssl.SSLContext | bool = True
        if self.url.startswith("https:"):
            try:
                verify = ssl.create_default_context(cafile=self.ca) if self.ca else \
                    ssl.create_default_context()
            except (OSError, ssl.SSLError) as e:
                raise TargetError(f"--ca: cannot load {self.ca}: {getattr(e, 'strerror', None) or e}") from None
        return httpx.Client(base_url=self.url, verify=verify, timeout=timeout,
                            headers={"Authorization": f"Bearer {self.token}"})

    def request(self, method: str, path: str, client: httpx.Client | None = None,
                **kwargs: Any) -> httpx.Response:
        """One request (on ``client``, made by :meth:`client`, when given: a long-lived
        caller keeps its connections); :class:`Unreachable` when no answer came back."""
        try:
            if client is not None:
                return client.request(method, path, **kwargs)
            with self.client() as c:
                return c.request(method, path, **kwargs)
        except httpx.TransportError as e:
            raise Unreachable(self.explain(e)) from None
        except (FileNotFoundError, ConnectionError) as e:
            raise Unreachable(f"cannot reach the vpe agent at {self.where}: {e}") from None

    def explain(self, e: BaseException) -> str:
        """A transport failure in words: refused, TLS, timeout."""
        text = str(e) or type(e).__name__
        if self.url is None:
            return f"cannot reach the vpe agent at {self.socket}: {text} (is `vpe agent` running?)"
        cause: BaseException | None = e
        while cause is not None:  # the ssl error is the cause of httpx's ConnectError
            if isinstance(cause, ssl.SSLCertVerificationError):
                hint = "give the CA that signed the agent's certificate with --ca FILE or VPE_CA"
                return (f"TLS verification of {self.url} failed: {cause.verify_message or cause} "
                        f"({hint})")
            if isinstance(cause, ssl.SSLError):
                plain = "WRONG_VERSION_NUMBER" in str(cause) or "wrong version number" in str(cause)
                hint = " (the agent's TCP API is plain HTTP: use an http:// URL)" if plain else ""
                return f"TLS handshake with {self.url} failed: {cause.reason or cause}{hint}"
            cause = cause.__cause__ or cause.__context__
        if isinstance(e, httpx.ConnectTimeout | httpx.ReadTimeout):
            return f"cannot reach the vpe agent at {self.url}: timed out"
        if "refused" in text.lower():
            return f"cannot reach the vpe agent at {self.url}: connection refused (is its [api] tcp listener up?)"
        if isinstance(e, httpx.RemoteProtocolError) and self.url.startswith("http:"):
            return (f"the agent at {self.url} did not answer HTTP: {text} (its TCP API may use TLS: "
                    "try an https:// URL)")
        return f"cannot reach the vpe agent at {self.url}: {text}"

    def unauthorized(self) -> str:
        """The message of a 401: the token was refused (never printed)."""
        return (f"the agent at {self.url} refused the bearer token (HTTP 401): check {self.token_source} "
                "against the agent's [api] token")


def read_token(path: str) -> str:
    """The token in ``path`` (surrounding blanks and the final newline dropped)."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise TargetError(f"--token-file: cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise TargetError(f"--token-file: {path} is not a text file") from None
    token = text.strip()
    if not token:
        raise TargetError(f"--token-file: {path} is empty")
    if not token.isascii() or not token.isprintable() or " " in token:
        raise TargetError(f"--token-file: {path} does not hold one token (printable ASCII without spaces)")
    return token


def check_url(url: str) -> str:
    """``http(s)://HOST:PORT`` with no path beyond ``/``; returned without the trailing slash."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise TargetError(f"--api: {url!r} is not a URL: {e}") from None
    if parts.scheme not in ("http", "https"):
        raise TargetError(f"--api: {url!r}: expected http://HOST:PORT or https://HOST:PORT")
    if not parts.hostname:
        raise TargetError(f"--api: {url!r} names no host")
    if port is None:
        raise TargetError(f"--api: {url!r} names no port (the agent's [api] tcp HOST:PORT)")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise TargetError(f"--api: {url!r}: give only the scheme, host and port (no path, query or user)")
    return f"{parts.scheme}://{parts.netloc}"


def make_target(socket: str, api: str | None, token_file: str | None, token_env: str | None,
                ca: str | None) -> Target:
    """The target the options name. TargetError: they do not make one."""
    if not api:
        if token_file or ca:
            given = "--token-file" if token_file else "--ca"
            raise TargetError(f"{given} is for a TCP API: give --api https://HOST:PORT as well")
        return Target(socket=socket)
    url = check_url(api)
    if token_file:
        token, source = read_token(token_file), f"--token-file {token_file}"
    elif token_env:
        token = token_env.strip()
        if not token.isascii() or not token.isprintable() or " " in token:
            raise TargetError("VPE_TOKEN: not one token (printable ASCII without spaces)")
        source = "VPE_TOKEN"
    else:
        raise TargetError("--api needs the agent's bearer token: --token-file FILE or the VPE_TOKEN "
                          "environment variable")
    if ca and not url.startswith("https:"):
        raise TargetError(f"--ca is for https:// URLs; {url} is plain HTTP")
    if ca and not Path(ca).is_file():
        raise TargetError(f"--ca: {ca} is not a readable file")
    return Target(url=url, token=token, token_source=source, ca=ca)
