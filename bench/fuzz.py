"""Fuzzing campaign: whole OPEN and UPDATE messages through the codec and a live session.

Run (low priority, it is long):

    nice -n 19 .venv/bin/python bench/fuzz.py codec --inputs 10000000 --workers 2
    nice -n 19 .venv/bin/python bench/fuzz.py session --inputs 100000

Engine: a mutation fuzzer of our own (no coverage feedback). Seeds are the
OPEN and UPDATE messages of the captured real-daemon sessions in
tests/vectors (GoBGP, FRR, BIRD, ExaBGP) plus hand-built ones covering every
attribute and family vpe decodes. Each input is a seed with 1 to 4 stacked
mutations: bit flips, interesting octets and 16-bit values, insertions,
deletions, duplications, truncation, splicing two seeds, and
structure-aware ones that pick one path attribute (or OPEN capability) and
change its flags, type, length, or drop/duplicate it, with the enclosing
lengths fixed up or not. Why not atheris or hypothesis: atheris is not
installed here, and hypothesis's generation costs about a millisecond per
example, so 10 million inputs would take hours; this engine runs at tens of
thousands of inputs per second per core.

``codec``: each input goes to :func:`vpe.bgp.wire.decode_message` under a
random codec context (4-octet AS or not, iBGP or eBGP, ADD-PATH on every
family, extended next hop). The decoder must return a message or raise
BGPError; what decodes must also serialise (``to_json``) and encode again.
Anything else is a crash, kept with its input (hex) by signature
(exception type and the frame that raised it).

``session``: the agent's real Engine listens on loopback with several fuzzed
neighbors and one witness neighbor. Each fuzzed neighbor connects over TCP,
sends a (sometimes mutated) OPEN, then streams mutated UPDATEs; after a
NOTIFICATION it reconnects. Inputs counted are the messages the agent really
processed (its per-peer message counters). A crash is an exception in any of
the agent's tasks, a session dropped without a NOTIFICATION, or the witness
leaving Established.

Prints one JSON object: inputs tried, rate, outcomes, crashes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import random
import socket
import struct
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from vpe.bgp.wire import decode_message  # noqa: E402
from vpe.bgp.wire.constants import FAMILY_BY_NAME, MessageType  # noqa: E402
from vpe.bgp.wire.context import CodecContext  # noqa: E402
from vpe.bgp.wire.errors import BGPError  # noqa: E402

ALL_FAMILIES = frozenset(FAMILY_BY_NAME.values())
CONTEXTS = [
    CodecContext(),
    CodecContext(asn4=False),
    CodecContext(ibgp=False),
    CodecContext(addpath=ALL_FAMILIES),
    CodecContext(extended_nexthop=ALL_FAMILIES, ibgp=False),
    CodecContext(asn4=False, addpath=ALL_FAMILIES, ibgp=False),
]
OPEN, UPDATE = int(MessageType.OPEN), int(MessageType.UPDATE)


# -- seeds ------------------------------------------------------------------------------


def _attr(flags: int, code: int, value: bytes) -> bytes:
    if flags & 0x10 or len(value) > 255:
        return struct.pack("!BBH", flags | 0x10, code, len(value)) + value
    return struct.pack("!BBB", flags, code, len(value)) + value


def _update(withdrawn: bytes = b"", attrs: bytes = b"", nlri: bytes = b"") -> bytes:
    return struct.pack("!H", len(withdrawn)) + withdrawn + struct.pack("!H", len(attrs)) + attrs + nlri


def _vpn4(label: int, rd: int, addr: bytes, plen: int = 32) -> bytes:
    return bytes([88 + plen]) + (label << 4 | 1).to_bytes(3, "big") + struct.pack("!HHI", 0, 65000, rd) + addr[: (plen + 7) // 8]


def built_seeds() -> list[tuple[int, bytes]]:
    """Hand-made messages covering every attribute and family vpe decodes."""
    base = (_attr(0x40, 1, b"\x00") + _attr(0x40, 2, b"\x02\x02" + struct.pack("!II", 65001, 65002))
            + _attr(0x40, 3, bytes([198, 18, 0, 1])) + _attr(0x80, 4, struct.pack("!I", 10))
            + _attr(0x40, 5, struct.pack("!I", 100)) + _attr(0x40, 6, b"")
            + _attr(0xC0, 7, struct.pack("!I", 65001) + bytes([198, 18, 0, 1]))
            + _attr(0xC0, 8, struct.pack("!II", 0xFFFF0001, 65000 << 16 | 1))
            + _attr(0x80, 9, bytes([198, 18, 0, 9])) + _attr(0x80, 10, bytes([198, 18, 0, 10]) * 2)
            + _attr(0xC0, 16, b"\x00\x02" + struct.pack("!HI", 65000, 1) + b"\x03\x0c" + b"\x00" * 4 + b"\x00\x0d")
            + _attr(0xC0, 32, struct.pack("!III", 65000, 1, 2)))
    v4 = bytes([24, 192, 0, 2, 25, 198, 51, 100, 128])
    seeds = [(UPDATE, _update(attrs=base, nlri=v4)), (UPDATE, _update(withdrawn=v4)), (UPDATE, _update())]
    # VPNv4 / VPNv6 reach and unreach, RTC, labeled unicast, MCAST-VPN, PMSI, tunnel encap
    nh4 = b"\x00" * 8 + bytes([198, 18, 0, 1])
    vpn = _vpn4(100, 1, bytes([203, 0, 113, 5])) + _vpn4(101, 2, bytes([192, 0, 2, 0]), 24)
    mp = struct.pack("!HBB", 1, 128, len(nh4)) + nh4 + b"\x00" + vpn
    common = _attr(0x40, 1, b"\x00") + _attr(0x40, 2, b"") + _attr(0x40, 5, struct.pack("!I", 100))
    seeds.append((UPDATE, _update(attrs=common + _attr(0x80, 14, mp))))
    seeds.append((UPDATE, _update(attrs=_attr(0x80, 15, struct.pack("!HB", 1, 128) + vpn))))
    nh6 = b"\x00" * 8 + bytes.fromhex("20010db8ffff00000000000000000001")
    v6 = bytes([88 + 64]) + (200 << 4 | 1).to_bytes(3, "big") + struct.pack("!HHI", 0, 65000, 3) + bytes.fromhex("20010db800000001")
    seeds.append((UPDATE, _update(attrs=common + _attr(0x80, 14, struct.pack("!HBB", 2, 128, len(nh6)) + nh6 + b"\x00" + v6))))
    rtc = bytes([96]) + struct.pack("!I", 65000) + b"\x00\x02" + struct.pack("!HI", 65000, 1)
    seeds.append((UPDATE, _update(attrs=common + _attr(0x80, 14, struct.pack("!HBB", 1, 132, 4) + bytes([198, 18, 0, 1]) + b"\x00" + rtc))))
    lu = bytes([24 + 24]) + (300 << 4 | 1).to_bytes(3, "big") + bytes([192, 0, 2])
    seeds.append((UPDATE, _update(attrs=common + _attr(0x80, 14, struct.pack("!HBB", 1, 4, 4) + bytes([198, 18, 0, 1]) + b"\x00" + lu))))
    ipmsi = bytes([1, 12]) + struct.pack("!HHI", 0, 65000, 1) + bytes([198, 18, 0, 1])
    pmsi = _attr(0xC0, 22, bytes([0, 6]) + (400 << 4).to_bytes(3, "big") + bytes([198, 18, 0, 1]))
    seeds.append((UPDATE, _update(attrs=common + pmsi + _attr(0x80, 14, struct.pack("!HBB", 1, 5, 4) + bytes([198, 18, 0, 1]) + b"\x00" + ipmsi))))
    tlv = struct.pack("!HH", 13, 8) + bytes([1, 2, 0, 0]) + b"\x00" * 2  # MPLS-in-UDP, color-ish sub-TLV
    seeds.append((UPDATE, _update(attrs=common + _attr(0xC0, 23, tlv) + _attr(0x80, 14, mp))))
    # OPENs: every capability vpe knows, plus an unknown one
    caps = b"".join(bytes([2, len(c)]) + c for c in (
        b"\x01\x04\x00\x01\x00\x80", b"\x01\x04\x00\x02\x00\x80", b"\x01\x04\x00\x01\x00\x84",
        b"\x02\x00", b"\x46\x00", b"\x06\x00", b"\x41\x04" + struct.pack("!I", 4200000000),
        b"\x45\x08\x00\x01\x80\x03\x00\x02\x80\x01", b"\x40\x06\x00\x78\x00\x01\x80\x80",
        b"\x05\x06\x00\x01\x00\x01\x00\x02", b"\x99\x03abc"))
    seeds.append((OPEN, struct.pack("!BHH", 4, 23456, 90) + bytes([198, 18, 0, 1]) + bytes([len(caps)]) + caps))
    return seeds


def vector_seeds() -> list[tuple[int, bytes]]:
    """OPENs and UPDATEs of the captured real-daemon sessions (needs dpkt; else none)."""
    sys.path.insert(0, str(HERE.parent / "tests" / "unit"))
    try:
        import vectors  # type: ignore[import-not-found]

        return [(m.type, m.body) for cap in vectors.captures() for m in vectors.messages(cap.name)
                if m.type in (OPEN, UPDATE)]
    except Exception as e:  # noqa: BLE001 - seeds are optional
        print(f"fuzz: no captured seeds ({e})", file=sys.stderr)
        return []


# -- mutations --------------------------------------------------------------------------

_INTERESTING8 = (0, 1, 0x7F, 0x80, 0xFF, 0x40, 0xC0, 0x10, 0x20, 14, 15, 16, 24, 32, 64, 128)
_INTERESTING16 = (0, 1, 2, 0x7FFF, 0x8000, 0xFFFF, 4096, 4077, 19, 255, 256)


def _attributes(body: bytes) -> tuple[int, int, list[tuple[int, int]]] | None:
    """(start, end, [(offset, total length)]) of an UPDATE's path attributes, if parseable."""
    if len(body) < 4:
        return None
    wl = int.from_bytes(body[:2], "big")
    if 2 + wl + 2 > len(body):
        return None
    al = int.from_bytes(body[2 + wl : 4 + wl], "big")
    start, end = 4 + wl, 4 + wl + al
    if end > len(body):
        return None
    out, pos = [], start
    while pos + 3 <= end:
        flags = body[pos]
        if flags & 0x10:
            if pos + 4 > end:
                break
            n, hdr = int.from_bytes(body[pos + 2 : pos + 4], "big"), 4
        else:
            n, hdr = body[pos + 2], 3
        if pos + hdr + n > end:
            break
        out.append((pos, hdr + n))
        pos += hdr + n
    return start, end, out


def _fix_attr_len(body: bytearray, start: int, end: int) -> None:
    wl = int.from_bytes(body[:2], "big")
    body[2 + wl : 4 + wl] = (end - start).to_bytes(2, "big")


def _structured(rng: random.Random, t: int, body: bytearray) -> bytearray:
    if t != UPDATE:
        # OPEN: optional parameter length, one capability header, version, hold time
        if len(body) >= 10:
            k = rng.randrange(5)
            if k == 0:
                body[9] = rng.choice(_INTERESTING8)
            elif k == 1 and len(body) > 12:
                i = rng.randrange(10, len(body) - 1)
                body[i] = rng.choice(_INTERESTING8)
            elif k == 2:
                body[0] = rng.choice((3, 4, 5))
            elif k == 3:
                body[3:5] = rng.choice((0, 1, 2, 3, 0xFFFF)).to_bytes(2, "big")
            else:
                body += bytes([2, 2, rng.randrange(256), 0])
                body[9] = min(255, body[9] + 4)
        return body
    parsed = _attributes(bytes(body))
    if not parsed or not parsed[2]:
        return body
    start, end, attrs = parsed
    pos, size = rng.choice(attrs)
    k = rng.randrange(7)
    if k == 0:  # flags
        body[pos] ^= rng.choice((0x80, 0x40, 0x20, 0x10, 0x08))
        if body[pos] & 0x10 != bytes(body)[pos] & 0x10:
            pass
    elif k == 1:  # type code
        body[pos + 1] = rng.choice((1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14, 15, 16, 22, 23, 32, 99, 255))
    elif k == 2:  # length byte(s)
        if body[pos] & 0x10:
            body[pos + 2 : pos + 4] = rng.choice(_INTERESTING16).to_bytes(2, "big")
        else:
            body[pos + 2] = rng.choice(_INTERESTING8)
    elif k == 3:  # drop it
        del body[pos : pos + size]
        end -= size
    elif k == 4:  # duplicate it
        body[pos:pos] = body[pos : pos + size]
        end += size
    elif k == 5:  # mutate inside its value
        if size > 3:
            i = rng.randrange(pos + 3, pos + size)
            body[i] = rng.choice(_INTERESTING8) if rng.random() < 0.5 else rng.randrange(256)
    else:  # move it first
        chunk = bytes(body[pos : pos + size])
        del body[pos : pos + size]
        body[start:start] = chunk
    if k in (3, 4) and rng.random() < 0.8:
        _fix_attr_len(body, start, end)
    return body


def mutate(rng: random.Random, seeds: list[tuple[int, bytes]], structured_bias: float = 0.4) -> tuple[int, bytes]:
    t, seed = rng.choice(seeds)
    b = bytearray(seed)
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4))):
        if rng.random() < structured_bias:
            b = _structured(rng, t, b)
            continue
        k = rng.randrange(9)
        n = len(b)
        if k == 0 and n:
            i = rng.randrange(n)
            b[i] ^= 1 << rng.randrange(8)
        elif k == 1 and n:
            b[rng.randrange(n)] = rng.choice(_INTERESTING8)
        elif k == 2 and n >= 2:
            i = rng.randrange(n - 1)
            b[i : i + 2] = rng.choice(_INTERESTING16).to_bytes(2, "big")
        elif k == 3:
            i = rng.randrange(n + 1)
            b[i:i] = os.urandom(rng.randrange(1, 17))
        elif k == 4 and n:
            i = rng.randrange(n)
            del b[i : i + rng.randrange(1, 17)]
        elif k == 5 and n:
            i = rng.randrange(n)
            b[i:i] = b[i : i + rng.randrange(1, 33)]
        elif k == 6 and n:
            del b[rng.randrange(n) :]
        elif k == 7:
            t2, other = rng.choice(seeds)
            if t2 == t and other:
                b = b[: rng.randrange(len(b) + 1)] + other[rng.randrange(len(other)) :]
        elif n:
            b[rng.randrange(n)] = rng.randrange(256)
    return t, bytes(b[:65535 - 19])


# -- codec campaign ----------------------------------------------------------------------


def _signature(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    where = next((f for f in reversed(tb) if "/vpe/" in f.filename), tb[-1] if tb else None)
    loc = f"{Path(where.filename).name}:{where.lineno}" if where else "?"
    return f"{type(exc).__name__} at {loc}"


def _codec_worker(args: tuple[int, int, list[tuple[int, bytes]]]) -> dict[str, Any]:
    n, seed, seeds = args
    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    crashes: dict[str, list[str]] = {}
    slow: list[tuple[float, str]] = []
    for _ in range(n):
        t, body = mutate(rng, seeds)
        ctx = rng.choice(CONTEXTS)
        t0 = time.perf_counter()
        try:
            msg = decode_message(t, body, ctx)
            msg.to_json()
            msg.encode(ctx)
            action = getattr(msg, "action", 0)
            outcomes[f"{'open' if t == OPEN else 'update'} ok action={int(action)}"] += 1
        except BGPError as e:
            outcomes[f"{'open' if t == OPEN else 'update'} error {e.code}/{e.subcode}"] += 1
        except Exception as e:  # noqa: BLE001 - that is what we are looking for
            sig = _signature(e)
            ex = crashes.setdefault(sig, [])
            if len(ex) < 3:
                ex.append(f"type={t} ctx={CONTEXTS.index(ctx)} {body.hex()}")
            outcomes["crash"] += 1
        dt = time.perf_counter() - t0
        if dt > 0.05:
            slow.append((dt, f"type={t} {body.hex()[:400]}"))
    return {"inputs": n, "outcomes": dict(outcomes), "crashes": crashes,
            "slow": sorted(slow, reverse=True)[:5]}


def codec_campaign(inputs: int, workers: int, seed: int) -> dict[str, Any]:
    seeds = vector_seeds() + built_seeds()
    chunk = 50_000
    jobs = [(min(chunk, inputs - i), seed * 1_000_003 + i, seeds) for i in range(0, inputs, chunk)]
    t0 = time.monotonic()
    total: Counter[str] = Counter()
    crashes: dict[str, list[str]] = {}
    slow: list[Any] = []
    done = 0
    with multiprocessing.Pool(workers) as pool:
        for r in pool.imap_unordered(_codec_worker, [(n, s, seeds) for n, s, _ in jobs]):
            done += r["inputs"]
            total.update(r["outcomes"])
            for sig, ex in r["crashes"].items():
                crashes.setdefault(sig, []).extend(ex[: 3 - len(crashes.get(sig, []))])
            slow = sorted(slow + r["slow"], reverse=True)[:5]
            if done % 1_000_000 < chunk:
                print(f"fuzz codec: {done} inputs, {total['crash']} crashes, "
                      f"{done / (time.monotonic() - t0):.0f}/s", file=sys.stderr, flush=True)
    secs = time.monotonic() - t0
    return {"mode": "codec", "inputs": done, "seeds": len(seeds), "seconds": round(secs, 1),
            "rate_per_s": round(done / secs), "crashes": sum(1 for _ in crashes),
            "crash_inputs": total["crash"], "crash_signatures": crashes,
            "outcomes": dict(sorted(total.items())), "slowest": slow}


# -- session campaign --------------------------------------------------------------------

#: loopback addresses no test uses (TESTBED: 127.0.0.0/8 for processes on one machine)
ENGINE = "127.0.0.70"
WITNESS = "127.0.0.71"
FUZZERS = [f"127.0.0.{i}" for i in range(72, 80)]


def _config(port: int) -> str:
    fams = '["ipv4-unicast", "vpnv4", "vpnv6", "rtc", "ipv4-labeled-unicast", "ipv4-mcast-vpn"]'
    out = ["[bgp]", "local_as = 65000", 'router_id = "198.18.0.70"', f'listen = ["{ENGINE}"]',
           f"port = {port}"]
    for a in [WITNESS, *FUZZERS]:
        out += ["", "[[neighbors]]", f'address = "{a}"', "remote_as = 65000", "passive = true",
                "connect_retry = 0.05", "graceful_restart = false", f"families = {fams}",
                "hold_time = 30"]
    out += ["", "[dataplane]", 'driver = "none"']
    return "\n".join(out) + "\n"


def _frame(t: int, body: bytes) -> bytes:
    return b"\xff" * 16 + struct.pack("!HB", 19 + len(body), t) + body


def _open_body(router_id: str) -> bytes:
    caps = b"".join(bytes([2, len(c)]) + c for c in (
        b"\x01\x04\x00\x01\x00\x01", b"\x01\x04\x00\x01\x00\x80", b"\x01\x04\x00\x02\x00\x80",
        b"\x01\x04\x00\x01\x00\x84", b"\x01\x04\x00\x01\x00\x04", b"\x01\x04\x00\x01\x00\x05",
        b"\x41\x04" + struct.pack("!I", 65000), b"\x02\x00", b"\x06\x00"))
    rid = bytes(int(x) for x in router_id.split("."))
    return struct.pack("!BHH", 4, 65000, 30) + rid + bytes([len(caps)]) + caps


async def _read_msgs(reader: asyncio.StreamReader, timeout: float,
                     most: int = 1000) -> tuple[list[tuple[int, bytes]], bool]:
    """Up to ``most`` messages that arrive within ``timeout`` (each), and EOF."""
    out: list[tuple[int, bytes]] = []
    try:
        while len(out) < most:
            hdr = await asyncio.wait_for(reader.readexactly(19), timeout)
            n, t = struct.unpack_from("!HB", hdr, 16)
            body = await asyncio.wait_for(reader.readexactly(n - 19), 1.0)
            out.append((t, body))
        return out, False
    except TimeoutError:
        return out, False
    except (asyncio.IncompleteReadError, ConnectionError, OSError):
        return out, True


async def session_campaign(inputs: int, seed: int) -> dict[str, Any]:
    from vpe.agent.config import parse_config
    from vpe.agent.engine import Engine

    logging.basicConfig(level=logging.CRITICAL)  # the agent logs every malformed message
    rng = random.Random(seed)
    seeds = vector_seeds() + built_seeds()
    upd_seeds = [s for s in seeds if s[0] == UPDATE]
    open_seeds = [(OPEN, _open_body("198.18.0.70"))] + [s for s in seeds if s[0] == OPEN]
    with socket.socket() as s:
        s.bind((ENGINE, 0))
        port = s.getsockname()[1]
    loop = asyncio.get_running_loop()
    task_errors: list[str] = []
    loop.set_exception_handler(lambda _l, ctx: task_errors.append(
        f"{ctx.get('message')}: {ctx.get('exception')!r}"))
    engine = Engine(parse_config(_config(port), "<fuzz>"))
    await engine.start()
    outcomes: Counter[str] = Counter()
    crashes: list[str] = []
    witness_drops = 0
    sent = 0
    t0 = time.monotonic()

    async def connect(addr: str, open_body: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for _ in range(500):
            try:
                r, w = await asyncio.open_connection(ENGINE, port, local_addr=(addr, 0))
            except OSError:
                await asyncio.sleep(0.02)
                continue
            w.write(_frame(OPEN, open_body))
            msgs, _eof = await _read_msgs(r, 1.0, most=1)
            if msgs and msgs[0][0] == OPEN:
                w.write(_frame(int(MessageType.KEEPALIVE), b""))
                return r, w
            w.close()
            if any(t == int(MessageType.NOTIFICATION) and b[:1] == b"\x02" for t, b in msgs):
                return None  # the OPEN itself was refused (a fuzzed one)
            await asyncio.sleep(0.02)
        raise RuntimeError(f"{addr}: cannot connect to the agent")

    witness = await connect(WITNESS, _open_body("198.18.0.71"))
    assert witness is not None

    async def keep_witness() -> None:
        while True:
            witness[1].write(_frame(int(MessageType.KEEPALIVE), b""))
            await asyncio.sleep(5)

    kw = loop.create_task(keep_witness())

    async def wait(cond: Any, timeout: float) -> bool:
        end = loop.time() + timeout
        while not cond():
            if loop.time() > end:
                return False
            await asyncio.sleep(0.005)
        return True

    async def fuzzer(addr: str, budget: int) -> None:
        nonlocal sent, witness_drops
        peer = engine.speaker.peers[addr]
        rid = "198.18.0." + addr.rsplit(".", 1)[1]
        done = 0
        while done < budget:
            await wait(lambda: not peer.established, 2.0)
            if rng.random() < 0.05:  # a fuzzed OPEN: one input
                _, ob = mutate(rng, open_seeds, 0.5)
                conn = await connect(addr, ob)
                done += 1
                sent += 1
                if conn is None:
                    outcomes["open refused with NOTIFICATION"] += 1
                    continue
                # the agent sends its OPEN first: whether ours passed shows in the session
                r, w = conn
                if not await wait(lambda: peer.established, 1.0):
                    msgs, _eof = await _read_msgs(r, 0.2)
                    codes = [f"{b[0]}/{b[1]}" for t, b in msgs if t == int(MessageType.NOTIFICATION)]
                    outcomes["open refused: " + (", ".join(codes) or "closed")] += 1
                    w.close()
                    continue
                outcomes["open accepted"] += 1
            else:
                conn = await connect(addr, _open_body(rid))
                if conn is None:
                    crashes.append(f"{addr}: a valid OPEN was refused")
                    return
            r, w = conn
            if not await wait(lambda: peer.established, 2.0):
                w.close()
                continue
            base = peer.counters["messages_in"]
            closed = False
            while not closed and done + peer.counters["messages_in"] - base < budget:
                burst = [mutate(rng, upd_seeds, 0.9)[1] for _ in range(20)]
                w.write(b"".join(_frame(UPDATE, b) for b in burst))
                with contextlib.suppress(ConnectionError):
                    await w.drain()
                msgs, eof = await _read_msgs(r, 0.002)
                notes = [b for t, b in msgs if t == int(MessageType.NOTIFICATION)]
                for b in notes:
                    outcomes[f"notification {b[0]}/{b[1]}"] += 1
                if notes or eof:
                    closed = True
                    if not notes:
                        crashes.append(f"{addr}: session closed without a NOTIFICATION")
                if not engine.speaker.peers[WITNESS].established:
                    witness_drops += 1
            w.close()
            await wait(lambda: not peer.established, 2.0)
            processed = min(peer.counters["messages_in"] - base, budget - done)
            done += processed
            sent += processed

    per = inputs // len(FUZZERS) + 1

    async def progress() -> None:
        while True:
            await asyncio.sleep(10)
            print(f"fuzz session: {sent} inputs processed, {len(task_errors)} task errors, "
                  f"{sent / (time.monotonic() - t0):.0f}/s", file=sys.stderr, flush=True)

    pt = loop.create_task(progress())
    try:
        await asyncio.gather(*(fuzzer(a, per) for a in FUZZERS))
    finally:
        pt.cancel()
        kw.cancel()
        witness_up = engine.speaker.peers[WITNESS].established
        counters = {a: dict(engine.speaker.peers[a].counters) for a in FUZZERS}
        await engine.stop()
    secs = time.monotonic() - t0
    crashes += task_errors
    if not witness_up or witness_drops:
        crashes.append(f"witness session dropped ({witness_drops} checks)")
    agg: Counter[str] = Counter()
    for c in counters.values():
        agg.update({k: v for k, v in c.items() if k in ("messages_in", "updates_in", "treat_as_withdraw",
                                                        "notifications_out", "established_transitions")})
    return {"mode": "session", "inputs": sent, "seconds": round(secs, 1),
            "rate_per_s": round(sent / secs), "crashes": len(crashes), "crash_details": crashes[:20],
            "witness_established_throughout": witness_up and not witness_drops,
            "outcomes": dict(sorted(outcomes.items())), "agent_counters": dict(agg)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=["codec", "session"])
    ap.add_argument("--inputs", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", help="also write the JSON result here")
    a = ap.parse_args()
    if a.mode == "codec":
        result = codec_campaign(a.inputs, a.workers, a.seed)
    else:
        result = asyncio.run(session_campaign(a.inputs, a.seed))
    text = json.dumps(result, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
