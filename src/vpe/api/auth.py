"""Bearer-token authentication for the API's TCP listener (R13.4)."""

from __future__ import annotations

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
                        (b"www-authenticate", b'Bearer realm="vpe"')],
        })
        await send({"type": "http.response.body", "body": body})
