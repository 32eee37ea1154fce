"""What a request may be: size, media type, encoding, JSON syntax (documented in docs/api.md).

:class:`BodyGuard` is an ASGI middleware in front of every route. A request
body is read by it, bounded, before any route sees it:

* more than :data:`MAX_BODY` octets (by ``Content-Length`` or as read): **413**,
  without reading the rest;
* a body with a media type other than JSON (``application/json`` or
  ``*/*+json``): **415**;
* not UTF-8, not JSON, or JSON with ``NaN``/``Infinity`` or a number too
  large for a double (``1e400``): **400**, naming the octet or the value.

The route then gets the same octets again. Nothing is echoed back: an
error message names the position or the limit, never the input.

:func:`validation_handler` renders pydantic's errors without the offending
input (a 50 MB value is not sent back, a NaN cannot break the encoder):
each error is ``{"loc", "msg", "type"}``; a list longer than its documented
cap (``too_long``) is a 413 as well.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: largest request body, in octets (1 MiB): the largest legitimate request, a
#: port with every list at its cap, is well under 64 KiB
MAX_BODY = 1 << 20


class BodyError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _reject_constant(name: str) -> Any:
    raise BodyError(400, f"body: {name} is not a JSON number (RFC 8259 has no NaN or infinities)")


def _finite_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        shown = text if len(text) <= 32 else text[:32] + "..."
        raise BodyError(400, f"body: the number {shown} is too large for a double")
    return v


def check_json(body: bytes) -> Any:
    """The JSON value of ``body``, or :class:`BodyError` (400) saying what is wrong and where."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BodyError(400, f"body: not UTF-8 (octet {e.start}: {e.reason})") from None
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except json.JSONDecodeError as e:
        raise BodyError(400, f"body: not JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise BodyError(400, "body: JSON nested too deeply") from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        raise BodyError(400, f"body: not usable JSON: {str(e)[:120]}") from None


def _is_json(ctype: bytes) -> bool:
    mt = ctype.split(b";", 1)[0].strip().lower()
    return mt == b"application/json" or (mt.startswith(b"application/") and mt.endswith(b"+json"))


async def _reply(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BodyGuard:
    """ASGI middleware: bounded, typed, well-formed request bodies (see the module text)."""

    def __init__(self, app: ASGIApp, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length: int | None = None
        ctype = b""
        for k, v in scope.get("headers") or ():
            k = k.lower()
            if k == b"content-length":
                try:
                    length = int(v)
                except ValueError:
                    await _reply(send, 400, "content-length: not a number")
                    return
            elif k == b"content-type":
                ctype = bytes(v)
        if length is not None and length > self.max_body:
            await _reply(send, 413, f"body: {length} octets, at most {self.max_body} (docs/api.md, Limits)")
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await _reply(send, 413, f"body: more than {self.max_body} octets (docs/api.md, Limits)")
                return
            chunks.append(chunk)
            more = msg.get("more_body", False)
        body = b"".join(chunks)
        if body:
            if not _is_json(ctype):
                shown = ctype.decode("latin-1")[:64] or "none"
                await _reply(send, 415, f"content-type: {shown!r}; the API takes application/json")
                return
            try:
                check_json(body)
            except BodyError as e:
                await _reply(send, e.status, e.detail)
                return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _loc(loc: Any) -> list[str | int]:
    return [x if isinstance(x, int) else str(x) for x in loc]


async def validation_handler(request: Request, exc: Exception) -> JSONResponse:
    """pydantic's errors without the input; 413 when a list is over its cap."""
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": _loc(e.get("loc", ())), "msg": str(e.get("msg", "")).removeprefix("Value error, "),
         "type": str(e.get("type", ""))}
        for e in exc.errors()
    ]
    too_long = [e for e in errors if e["type"] == "too_long"]
    if too_long:
        e = too_long[0]
        field = ".".join(str(x) for x in e["loc"][1:]) or "body"
        return JSONResponse({"detail": f"{field}: {e['msg']} (docs/api.md, Limits)"}, status_code=413)
    return JSONResponse({"detail": errors}, status_code=422)
