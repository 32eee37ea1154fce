"""Parse tcpdump's verbose BGP decode (``.out`` files) into per-message expectations.

tcpdump prints one block per frame (``   N  <timestamp> ...``) and inside it one
block per BGP message (``\\tUpdate Message (2), length: 95``). Only the fields
the conformance test compares are extracted; everything else is ignored, so a
line this parser does not know never breaks it. Values are normalised here,
in one place, to the same forms :mod:`.test_tcpdump` derives from vpe's
decoded values:

* AS numbers are ints (asdot ``42180.26194`` becomes 2764334674);
* a route is ``"<prefix>"``, with ``" label <n>"`` for the first (top) label,
  ``"RD <rd> "`` in front for VPN routes, ``" path-id <n>"`` for ADD-PATH, and
  ``"rtc <origin-as> /<rt-bits> <hex>"`` for RT constraint (RFC 4684) routes;
* extended communities are ``(type, text)``: route targets as
  ``("target", "65000:101")``, other types by their type code ``("0x030c", ...)``.

Where tcpdump itself reports a problem inside a message (``invalid len``,
``[path attrs too short]``, ``(illegal prefix length)``, ``[|bgp]``) the
message gets ``problems``; its field values are then only partly trustworthy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_FRAME = re.compile(r"^\s*(\d+)  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
_MESSAGE = re.compile(r"^\t([A-Za-z][A-Za-z -]*?) Message \((\d+)\), length: (\d+)(.*)$")
_PARTIAL = re.compile(r"^\[\|BGP (.+)\]$")
_ATTR = re.compile(r"^\t  (\S.*?) \((\d+)\), length: (\d+)(?:, Flags \[([^\]]*)\])?:?\s?(.*)$")
_CAP = re.compile(r"^\t      (\S.*?) \((\d+)\), length: (\d+)")
_OPEN_HEAD = re.compile(r"^\t  Version (\d+), my AS ([\d.]+), Holdtime (\d+)s, ID ([\d.]+)")
_FAMILY = re.compile(r"AFI:? [^()]*\((\d+)\), (?:vendor specific )?SAFI:? [^()]*\((\d+)\)")
_NOTIF = re.compile(r"^, (.+?) \((\d+)\),? subcode (.+?) \((\d+)\)(.*)$")
_RR = re.compile(r"^\t  AFI [^()]*\((\d+)\), SAFI [^()]*\((\d+)\), Subtype .*\((\d+)\)")
_AS4 = re.compile(r"^\t\t ?4 Byte AS ([\d.]+)")
_ADDPATH = re.compile(r"^\t\tAFI [^()]*\((\d+)\), SAFI [^()]*\((\d+)\), Send/Receive: (\w+)")
_MPCAP = re.compile(r"^\t\tAFI [^()]*\((\d+)\), SAFI [^()]*\((\d+)\)\s*$")
_PATHID = re.compile(r"^(.*?)\s+Path Id: (\d+)$")
_RD = re.compile(r"^RD: ([^ ]+) \(= [^)]*\), (.*)$")
_LABEL = re.compile(r"^(.*?), label:(\d+)(?: \(([^)]*)\))?$")
_RTC = re.compile(r"^origin AS: (\d+), route-target: \S+/(\d+)(?: \(([0-9a-f ]+)\))?$")
_EXTCOMM = re.compile(r"^\t    (.+?) \(0x([0-9a-f]{4})\), Flags \[[^\]]*\]: ?(.*)$")
_PROBLEMS = (
    "invalid len",
    "path attrs too short",
    "path attr too short",
    "illegal prefix length",
    "[|bgp]",
    "too short",
)

TYPE_NAMES = {"Open": 1, "Update": 2, "Notification": 3, "Keepalive": 4, "Route Refresh": 5}


def asn(text: str) -> int:
    """An AS number as tcpdump prints it (asplain or asdot) as an int."""
    if "." in text:
        hi, lo = text.split(".", 1)
        return int(hi) * 65536 + int(lo)
    return int(text)


@dataclass(slots=True)
class MpExpect:
    afi: int
    safi: int
    next_hops: list[str] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)
    end_of_rib: bool = False
    no_decoder: bool = False  # tcpdump has no decoder for the family


@dataclass(slots=True)
class AttrExpect:
    code: int
    name: str
    length: int
    flags: str
    value: str
    lines: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ExpectedMessage:
    """What tcpdump says about one message (fields unused by its type stay empty)."""

    frame: int
    index: int  # position within the frame
    type_name: str
    msg_type: int | None
    length: int | None
    partial: bool = False  # "[|BGP ...]": the frame ends inside this message
    problems: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    # OPEN
    version: int | None = None
    my_as: int | None = None
    hold_time: int | None = None
    bgp_id: str | None = None
    capabilities: list[int] = field(default_factory=list)  # codes, in order
    as4: int | None = None
    addpath: list[tuple[int, int, str]] = field(default_factory=list)  # afi, safi, mode
    mp_families: list[tuple[int, int]] = field(default_factory=list)
    # UPDATE
    withdrawn: list[str] = field(default_factory=list)
    announced: list[str] = field(default_factory=list)
    attrs: dict[int, AttrExpect] = field(default_factory=dict)
    attr_order: list[int] = field(default_factory=list)
    mp_reach: MpExpect | None = None
    mp_unreach: MpExpect | None = None
    end_of_rib: bool = False
    # NOTIFICATION
    code: int | None = None
    subcode: int | None = None
    shutdown_text: str | None = None
    # ROUTE-REFRESH
    afi: int | None = None
    safi: int | None = None
    subtype: int | None = None

    # -- derived UPDATE fields (None when tcpdump did not print the attribute)

    def origin(self) -> str | None:
        a = self.attrs.get(1)
        return a.value.strip() if a else None

    def as_path(self) -> list[int] | None:
        return _as_list(self.attrs.get(2))

    def as4_path(self) -> list[int] | None:
        return _as_list(self.attrs.get(17))

    def next_hop(self) -> str | None:
        a = self.attrs.get(3)
        return a.value.strip() if a else None

    def med(self) -> int | None:
        return _int_value(self.attrs.get(4))

    def local_pref(self) -> int | None:
        return _int_value(self.attrs.get(5))

    def communities(self) -> list[str] | None:
        a = self.attrs.get(8)
        if a is None:
            return None
        return [c.strip() for c in a.value.split(",") if c.strip()]

    def large_communities(self) -> list[str] | None:
        a = self.attrs.get(32)
        if a is None:
            return None
        return [c.strip() for line in a.lines for c in line.split(",") if c.strip()]

    def ext_communities(self) -> list[tuple[str, str]] | None:
        a = self.attrs.get(16)
        if a is None:
            return None
        out: list[tuple[str, str]] = []
        for line in a.lines:
            m = _EXTCOMM.match(line)
            if not m:
                continue
            name, typ, value = m.groups()
            if name == "target":
                out.append(("target", value.split(" (=")[0].strip()))
            else:
                out.append((f"0x{typ}", value.strip()))
        return out


def _as_list(a: AttrExpect | None) -> list[int] | None:
    if a is None:
        return None
    v = a.value.strip()
    if v in ("", "empty"):
        return []
    return [
        asn(t) for t in v.replace("{", " ").replace("}", " ").split() if re.fullmatch(r"[\d.]+", t)
    ]


def _int_value(a: AttrExpect | None) -> int | None:
    if a is None:
        return None
    v = a.value.strip()
    return int(v) if v.isdigit() else None


def normalise_route(text: str) -> str:
    """tcpdump's route line -> the harness' route string (see module doc)."""
    text = text.strip()
    path_id = None
    m = _PATHID.match(text)
    if m:
        text, path_id = m.group(1).strip(), int(m.group(2))
    m = _RTC.match(text)
    if m:
        origin, bits, hexs = m.groups()
        out = f"rtc {origin} /{bits} {(hexs or '').replace(' ', '')}".rstrip()
    else:
        rd = None
        m = _RD.match(text)
        if m:
            rd, text = m.groups()
        label = None
        m = _LABEL.match(text)
        if m:
            text, label = m.group(1), int(m.group(2))
        out = text
        if label is not None:
            out += f" label {label}"
        if rd is not None:
            out = f"RD {rd} {out}"
    if path_id is not None:
        out += f" path-id {path_id}"
    return out


def _indent(line: str) -> int:
    """Depth of a decode line: tabs count 8, spaces 1."""
    n = 0
    for ch in line:
        if ch == "\t":
            n += 8
        elif ch == " ":
            n += 1
        else:
            break
    return n


def parse_out(path: str | Path) -> list[ExpectedMessage]:
    """All BGP messages tcpdump printed, in order, with the frame each is in."""
    messages: list[ExpectedMessage] = []
    frame = 0
    index = 0
    cur: ExpectedMessage | None = None
    for raw in Path(path).read_text(errors="replace").splitlines():
        m = _FRAME.match(raw)
        if m:
            frame = int(m.group(1))
            index = 0
            cur = None
            continue
        m = _PARTIAL.match(raw.strip())
        if m:
            name = m.group(1)
            messages.append(
                ExpectedMessage(frame, index, name, TYPE_NAMES.get(name), None, partial=True)
            )
            index += 1
            cur = None
            continue
        m = _MESSAGE.match(raw)
        if m:
            name, typ, length, rest = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
            cur = ExpectedMessage(frame, index, name, typ, length)
            index += 1
            messages.append(cur)
            if typ == 3:
                _notification_head(cur, rest)
            if any(p in rest for p in _PROBLEMS):
                cur.problems.append(rest.strip())
            continue
        if cur is not None and raw.startswith("\t"):
            cur.lines.append(raw)
    for msg in messages:
        _fill(msg)
    return messages


def _notification_head(msg: ExpectedMessage, rest: str) -> None:
    m = _NOTIF.match(rest)
    if not m:
        return
    msg.code, msg.subcode = int(m.group(2)), int(m.group(4))
    tail = m.group(5)
    t = re.search(r'Shutdown Communication \(length: \d+\): "(.*)"', tail)
    if t:
        msg.shutdown_text = t.group(1)
    elif "empty Shutdown Communication" in tail:
        msg.shutdown_text = ""


def _fill(msg: ExpectedMessage) -> None:
    for line in msg.lines:
        if any(p in line for p in _PROBLEMS):
            msg.problems.append(line.strip())
    if msg.msg_type == 1:
        _fill_open(msg)
    elif msg.msg_type == 2:
        _fill_update(msg)
    elif msg.msg_type == 5:
        for line in msg.lines:
            m = _RR.match(line)
            if m:
                msg.afi, msg.safi, msg.subtype = (int(g) for g in m.groups())
                break


def _fill_open(msg: ExpectedMessage) -> None:
    for line in msg.lines:
        m = _OPEN_HEAD.match(line)
        if m:
            msg.version = int(m.group(1))
            msg.my_as = asn(m.group(2))
            msg.hold_time = int(m.group(3))
            msg.bgp_id = m.group(4)
            continue
        m = _CAP.match(line)
        if m and not line.startswith("\t    Option"):
            msg.capabilities.append(int(m.group(2)))
            continue
        m = _AS4.match(line)
        if m:
            msg.as4 = asn(m.group(1))
            continue
        m = _ADDPATH.match(line)
        if m:
            msg.addpath.append((int(m.group(1)), int(m.group(2)), m.group(3).lower()))
            continue
        m = _MPCAP.match(line)
        if m:
            msg.mp_families.append((int(m.group(1)), int(m.group(2))))


def _fill_update(msg: ExpectedMessage) -> None:
    section: str | None = None  # "withdrawn" | "announced" | "attr"
    attr: AttrExpect | None = None
    mp: MpExpect | None = None
    for line in msg.lines:
        depth = _indent(line)
        stripped = line.strip()
        if depth == 10:  # "\t  " : a section or a top-level attribute
            mp = None
            if stripped == "Withdrawn routes:":
                section, attr = "withdrawn", None
                continue
            if stripped == "Updated routes:":
                section, attr = "announced", None
                continue
            if stripped.startswith("End-of-Rib Marker"):
                msg.end_of_rib = True
                continue
            m = _ATTR.match(line)
            if m:
                name, code, length, flags, value = m.groups()
                attr = AttrExpect(int(code), name, int(length), flags or "", value or "")
                section = "attr"
                if attr.code not in msg.attrs:  # tcpdump prints repeats; the first counts
                    msg.attrs[attr.code] = attr
                    msg.attr_order.append(attr.code)
                if attr.code in (14, 15):
                    mp = MpExpect(0, 0)
                    if attr.code == 14 and msg.mp_reach is None:
                        msg.mp_reach = mp
                    elif attr.code == 15 and msg.mp_unreach is None:
                        msg.mp_unreach = mp
                continue
            section, attr = None, None
            continue
        if section in ("withdrawn", "announced") and depth == 12:
            if stripped.startswith("(") or stripped.startswith("0x"):
                continue
            route = normalise_route(stripped.split(" [|")[0])
            (msg.withdrawn if section == "withdrawn" else msg.announced).append(route)
            continue
        if section == "attr" and attr is not None:
            attr.lines.append(line)
            if mp is not None:
                _mp_line(mp, line, depth, stripped)


def _mp_line(mp: MpExpect, line: str, depth: int, stripped: str) -> None:
    if depth == 12:
        m = _FAMILY.search(stripped)
        if m and stripped.startswith("AFI"):
            mp.afi, mp.safi = int(m.group(1)), int(m.group(2))
        elif stripped.startswith("nexthop:"):
            nh = stripped[len("nexthop:") :].split(", nh-length")[0]
            hops = []
            for part in re.split(r",\s*", nh):
                part = part.strip()
                if not part or part.startswith("RD:") or part.startswith("(="):
                    continue
                hops.append(part.split(" (=")[0].strip())
            # "RD: 0:0 (= 0.0.0.0), 12.4.4.4" splits as ["RD: 0:0 (= 0.0.0.0)", "12.4.4.4"]
            mp.next_hops = hops
        elif stripped.startswith("no AFI"):
            mp.no_decoder = True
    elif depth == 14:
        if stripped.startswith("End-of-Rib Marker"):
            mp.end_of_rib = True
        elif not stripped.startswith("0x") and not stripped.startswith("("):
            mp.routes.append(normalise_route(stripped.split(" [|")[0]))
