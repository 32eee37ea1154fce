"""Bearer-token authentication for the API's TCP listener (R13.4)."""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BearerAuth:
    """ASGI middleware: every HTTP request needs ``Authorization: Bearer <token>`` (else 401).

    Used on the TCP listener only (R13.4); the Unix socket is guarded by its
    file permissions. The token is compared in constant time.

    A browser cannot send a bearer token, so for the read-only web looking
    glass (``GET``/``HEAD`` under ``/lg``) HTTP Basic authentication with the
    token as the password (any user name) is the same credential, and its 401
    carries a Basic challenge so that the browser asks. Nowhere else: a
    browser sends remembered Basic credentials with any request to the site,
    also one a page of another site makes it send (a form POST), so the API
    that changes state takes the bearer header only.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        if not token:
            raise ValueError("api.token: a TCP API needs a non-empty bearer token")
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = b""
        for k, v in scope.get("headers") or ():
            if k.lower() == b"authorization":
                given = bytes(v)
                break
        scheme, _, cred = given.partition(b" ")
        if scheme.lower() == b"basic" and _is_lg(scope) and scope.get("method") in ("GET", "HEAD"):
            cred = _basic_password(cred.strip())
            scheme = b"bearer"
        if scheme.lower() == b"bearer" and secrets.compare_digest(cred.strip(), self._token):
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = json.dumps({"detail": "missing or wrong bearer token (Authorization: Bearer <api.token>)"}).encode()
        await send({
            "type": "http.response.start",
            "status": 401,
            "headers": [(b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"www-authenticate", _LG_CHALLENGE if _is_lg(scope) else b'Bearer realm="vpe"')],
        })
        await send({"type": "http.response.body", "body": body})


_LG_CHALLENGE = b'Basic realm="vpe looking glass: the API token is the password", charset="UTF-8"'


def _is_lg(scope: Scope) -> bool:
    path = str(scope.get("path") or "")
    return path == "/lg" or path.startswith("/lg/")


def _basic_password(cred: bytes) -> bytes:
    """The password of an HTTP Basic credential (``b""`` when it is not one)."""
    try:
        text = base64.b64decode(cred, validate=True)
    except (binascii.Error, ValueError):
        return b""
    _, sep, password = text.partition(b":")
    return password if sep else b""
