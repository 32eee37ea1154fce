"""Every captured UPDATE (tests/vectors) decoded by vpe, against tshark and the daemons' RIBs.

Why: the captures are real sessions between GoBGP, FRR, BIRD and ExaBGP, so
they carry what vpe will meet in the field (attribute orders, extended-length
flags on short attributes, several NLRI per UPDATE, RD types 0/1/2, label 3,
ADD-PATH on VPN families, RT constraint). Two oracles that share no code with
vpe judge the decode:

* tshark's dissection of the same message (``tshark_messages(name)[i]`` is
  ``messages(name)[i]``): prefixes per family, RD, labels, path ids, next
  hop, every attribute value, End-of-RIB;
* the daemons' own view after the exchange (``NAME.rib.json``): the routes
  vpe builds from one direction must be the routes the receiving daemon
  shows as learned from its peer (RD, prefix, labels, RTs, next hop).

tshark 4.0 cannot decode ADD-PATH VPN NLRI (README, "Known tshark
limitations"); for that capture the route list in the README and the
daemon views are the oracle. Each UPDATE must also re-encode to the same
octets, attribute by attribute (daemons order attributes and use the
extended-length bit as they like; vpe picks one canonical form).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from ipaddress import IPv6Address, ip_address, ip_network
from typing import Any, NamedTuple

import pytest

from vectors import Message, captures, fields, messages, rib_views, tshark_messages
from vpe.bgp.wire.attributes import (
    AsPath,
    ClusterList,
    Communities,
    Encapsulation,
    ExtendedCommunities,
    ExtendedCommunity,
    LocalPref,
    Med,
    NextHop,
    Origin,
    OriginatorId,
    RouteOrigin,
    RouteTarget,
)
from vpe.bgp.wire.attributes.extended_communities import decode_ext_community
from vpe.bgp.wire.constants import IPV4_UNICAST, RTC, AttrCode, Family, MessageType
from vpe.bgp.wire.context import DEFAULT_CONTEXT, CodecContext
from vpe.bgp.wire.errors import UpdateAction
from vpe.bgp.wire.nlri.base import IPAddress, Nlri
from vpe.bgp.wire.nlri.labeled import LabeledNlri
from vpe.bgp.wire.nlri.rtc import RouteTargetMembership
from vpe.bgp.wire.nlri.vpn import VpnPrefix
from vpe.bgp.wire.open import Open, negotiate
from vpe.bgp.wire.update import Update, decode_update

CAPTURE_NAMES = [c.name for c in captures()]
#: Captures whose VPN NLRI tshark 4.0 cannot parse (ADD-PATH, see the README).
TSHARK_BLIND_ADDPATH_VPN = frozenset({"exabgp_gobgp_addpath_vpn"})
LABELED_SAFIS = frozenset({4, 128})
EXTENDED_LENGTH = 0x10
ATTR_FLAG_BITS = 0xE0  # optional, transitive, partial: what the header means


# --------------------------------------------------------------------------- normalising


def canon(kind: str, value: Any) -> Any:
    """One neutral text/number form per kind, whoever wrote ``value``.

    The oracles spell the same thing differently: tshark ``"100 (bottom)"``,
    BIRD ``"(rt, 65000, 300)"``, GoBGP ``{"type": 0, "subtype": 2, ...}``,
    ExaBGP ``"encap:VXLAN"``, FRR an IPv4-mapped next hop that GoBGP prints
    as IPv4. Every comparison below goes through this one function, so a
    difference that survives it is a real one.
    """
    if kind == "ip":
        # BIRD may append a link-local address after a space; a zone after '%'
        addr = ip_address(str(value).split()[0].split("%")[0])
        if isinstance(addr, IPv6Address) and addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(addr)
    if kind == "prefix":
        return str(ip_network(str(value), strict=False))
    if kind == "labels":
        if isinstance(value, str):  # tshark "300 (bottom)", BIRD "300" or "16 17"
            return tuple(int(x) for x in re.findall(r"\d+", value.replace("(bottom)", "")))
        flat: list[int] = []
        for item in value:  # GoBGP [300], ExaBGP [[950]]
            flat.extend(item if isinstance(item, list) else [item])
        return tuple(int(x) for x in flat)
    if kind == "rd":
        if isinstance(value, dict):  # GoBGP {"type": 2, "admin": 4200000000, "assigned": 402}
            return f"{value['admin']}:{value['assigned']}"
        return str(value)
    if kind == "ext":
        return _canon_ext(value)
    if kind == "community":
        if isinstance(value, int):
            return f"{value >> 16}:{value & 0xFFFF}"
        return str(value)
    raise ValueError(f"canon: unknown kind {kind!r}")


_TUNNEL_NUMBERS = {
    "vxlan": 8,
    "nvgre": 9,
    "mpls": 10,
    "mpls-in-gre": 11,
    "vxlan-gpe": 12,
    "mpls-in-udp": 13,
    "gre": 2,
    "ip-in-ip": 7,
    "l2tpv3": 1,
}


def _canon_ext(value: Any) -> str:
    """Extended community -> ``rt:ADMIN:N``, ``soo:ADMIN:N``, ``encap:TUNNEL_NUMBER`` or ``raw:...``."""
    if isinstance(value, ExtendedCommunity):  # vpe
        if isinstance(value, RouteTarget | RouteOrigin):
            tag = "rt" if isinstance(value, RouteTarget) else "soo"
            return f"{tag}:{value.admin}:{value.assigned}"
        if isinstance(value, Encapsulation):
            return f"encap:{value.tunnel_type}"
        return "raw:" + value.encode().hex()
    if isinstance(value, dict) and "bgp.ext_com.type" in value:  # tshark
        etype = int(value["bgp.ext_com.type"], 16)
        for key, admin_key, num_key in (
            ("bgp.ext_com.stype_tr_as2", "bgp.ext_com.value_as2", "bgp.ext_com.value_an4"),
            ("bgp.ext_com.stype_tr_IP4", "bgp.ext_com.value_IP4", "bgp.ext_com.value_an2"),
            ("bgp.ext_com.stype_tr_as4", "bgp.ext_com.value_as4", "bgp.ext_com.value_an2"),
        ):
            if key in value and int(value[key], 16) in (2, 3):
                tag = "rt" if int(value[key], 16) == 2 else "soo"
                return f"{tag}:{value[admin_key]}:{value[num_key]}"
        if etype == 3 and int(value.get("bgp.ext_com.stype_tr_opaque", "0"), 16) == 0x0C:
            return f"encap:{int(value['bgp.ext_com.tunnel_type'])}"
        return f"raw:tshark:{sorted(value.items())}"
    if isinstance(value, dict) and "subtype" in value:  # GoBGP
        if value["subtype"] in (2, 3) and value["type"] in (0, 1, 2):
            tag = "rt" if value["subtype"] == 2 else "soo"
            return f"{tag}:{value['value']}"
        if (value["type"], value["subtype"]) == (3, 12):
            return f"encap:{value['tunnel_type']}"
        return f"raw:gobgp:{sorted(value.items())}"
    if isinstance(value, tuple):  # BIRD (kind, admin, number)
        kind, admin, number = value
        tag = {"rt": "rt", "ro": "soo"}.get(kind, f"raw:bird:{kind}")
        return f"{tag}:{admin}:{number}"
    if isinstance(value, str):  # ExaBGP "target:65000:950", "origin:...", "encap:VXLAN"
        tag, _, rest = value.partition(":")
        tag = tag.lower()
        if tag == "target":
            return f"rt:{rest}"
        if tag == "origin":
            return f"soo:{rest}"
        if tag == "encap":
            return f"encap:{_TUNNEL_NUMBERS.get(rest.lower(), rest)}"
        return f"raw:{value}"
    raise TypeError(f"extended community {value!r}")


def _rtc_text(n: RouteTargetMembership) -> str:
    """``ORIGIN_AS:ADMIN:N`` as GoBGP and tshark print a whole-RT membership."""
    rt = n.route_target
    if n.is_default or rt is None:
        return "default" if n.is_default else f"{n.origin_as}:*"
    if n.prefix_len == 96:
        value = decode_ext_community(rt)
        if isinstance(value, RouteTarget):
            return f"{n.origin_as}:{value.admin}:{value.assigned}"
    return str(n)


def _vpe_nlri(n: Nlri) -> tuple[str | None, str, tuple[int, ...], int]:
    """(RD, prefix, labels, path id) of a vpe NLRI in canonical form."""
    labels = n.labels if isinstance(n, LabeledNlri) else ()
    if isinstance(n, RouteTargetMembership):
        return None, _rtc_text(n), labels, n.path_id
    rd = canon("rd", n.rd) if isinstance(n, VpnPrefix) else None
    return rd, canon("prefix", n.prefix), labels, n.path_id  # type: ignore[attr-defined,unused-ignore]


# --------------------------------------------------------------------------- decoding


@dataclass(frozen=True, slots=True)
class Decoded:
    """One captured UPDATE: the raw message, tshark's dissection, vpe's decode and context."""

    msg: Message
    shark: dict[str, Any]
    update: Update
    ctx: CodecContext

    @property
    def sender(self) -> str:
        return self.msg.direction.split("->")[0].rsplit(":", 1)[0]

    @property
    def receiver(self) -> str:
        return self.msg.direction.split("->")[1].rsplit(":", 1)[0]


@cache
def opens(name: str) -> dict[str, Open]:
    """Sender IP -> the OPEN it sent."""
    return {
        m.direction.split("->")[0].rsplit(":", 1)[0]: Open.decode(m.body, DEFAULT_CONTEXT)
        for m in messages(name)
        if m.type == MessageType.OPEN
    }


def rx_context(name: str, sender: str, receiver: str) -> CodecContext:
    """What the receiver decodes with: negotiated from its OPEN (local) and the sender's."""
    o = opens(name)
    return negotiate(o[receiver], o[sender]).rx_context()


@cache
def decoded(name: str) -> tuple[Decoded, ...]:
    out = []
    for msg, shark in zip(messages(name), tshark_messages(name), strict=True):
        if msg.type != MessageType.UPDATE:
            continue
        src, dst = (d.rsplit(":", 1)[0] for d in msg.direction.split("->"))
        ctx = rx_context(name, src, dst)
        out.append(Decoded(msg, shark, decode_update(msg.body, ctx), ctx))
    return tuple(out)


# --------------------------------------------------------------------------- tshark side


def _listify(x: Any) -> list[Any]:
    if x is None:
        return []
    return x if isinstance(x, list) else [x]


def _shark_attrs(shark: dict[str, Any]) -> list[dict[str, Any]]:
    return _listify(shark.get("bgp.update.path_attributes", {}).get("bgp.update.path_attribute"))


def _entries(obj: Any, key: str = "bgp.prefix_length", depth: int = 0) -> Iterator[dict[str, Any]]:
    """The sub-objects of tshark JSON that describe one prefix (they hold ``key``)."""
    if depth > 32:
        return
    if isinstance(obj, dict):
        if key in obj:
            yield obj
            return
        for v in obj.values():
            yield from _entries(v, key, depth + 1)
    elif isinstance(obj, list):
        for v in obj:
            yield from _entries(v, key, depth + 1)


_TEXT_NLRI = re.compile(
    r"Label Stack=(?P<labels>[\d ]+?) \((?:bottom|withdrawn)\)(?: RD=(?P<rd>\S+),)? IPv[46]=(?P<prefix>\S+)"
)


def _shark_nlri(
    family: Family, obj: Any, texts: list[str], withdrawn: bool
) -> list[tuple[str | None, str, tuple[int, ...], int]] | None:
    """tshark's NLRI of one MP attribute as (RD, prefix, labels, path id); None if tshark
    did not decode it (malformed)."""
    if fields(obj, "_ws.malformed"):
        return None
    out: list[tuple[str | None, str, tuple[int, ...], int]] = []
    if family == RTC:
        for e in _entries(obj):
            plen = int(e["bgp.prefix_length"])
            if plen == 0:
                out.append((None, "default", (), 0))
            else:
                out.append((None, f"{e['bgp.originating_as']}:{e['bgp.community_prefix']}", (), 0))
        return out
    if family.safi in LABELED_SAFIS and family.afi == 1:
        for e in _entries(obj):
            labels = canon("labels", e["bgp.label_stack"])
            rd = e.get("bgp.rd")
            bits = int(e["bgp.prefix_length"]) - 24 * len(labels) - (64 if rd else 0)
            addr = e.get("bgp.mp_reach_nlri_ipv4_prefix") or e["bgp.mp_unreach_nlri_ipv4_prefix"]
            prefix = canon("prefix", f"{addr}/{bits}")
            out.append((rd, prefix, labels, 0))
        from_text = [_TEXT_NLRI.search(t) for t in texts]
        if texts and all(from_text):  # labeled IPv4: the item text must say the same
            assert [
                (m["rd"], canon("prefix", m["prefix"]), canon("labels", m["labels"]), 0)
                for m in from_text
                if m
            ] == out
        return out
    # VPNv6 / labeled IPv6 / withdrawals: tshark keeps them in the item text only.
    for text in texts:
        m = _TEXT_NLRI.search(text)
        assert m, f"tshark NLRI text not understood: {text!r}"
        out.append((m["rd"], canon("prefix", m["prefix"]), canon("labels", m["labels"]), 0))
    return out


def _shark_unicast(
    shark: dict[str, Any], key: str
) -> list[tuple[str | None, str, tuple[int, ...], int]]:
    """IPv4 unicast NLRI or withdrawn routes from the UPDATE body fields."""
    out: list[tuple[str | None, str, tuple[int, ...], int]] = []
    for e in _entries(shark.get(key, {})):
        prefix = e.get("bgp.nlri_prefix") or e.get("bgp.withdrawn_prefix")
        pid = int(e.get("bgp.nlri_path_id", 0))
        out.append((None, canon("prefix", f"{prefix}/{e['bgp.prefix_length']}"), (), pid))
    return out


def _shark_as_path(attr: dict[str, Any]) -> list[tuple[int, tuple[int, ...]]]:
    segs = []
    for seg in _listify(attr.get("bgp.update.path_attribute.as_path_segment")):
        asns = _listify(seg.get("bgp.update.path_attribute.as_path_segment.as4")) or _listify(
            seg.get("bgp.update.path_attribute.as_path_segment.as2")
        )
        segs.append(
            (
                int(seg["bgp.update.path_attribute.as_path_segment.type"]),
                tuple(int(a) for a in asns),
            )
        )
    return segs


def _shark_communities(attr: dict[str, Any]) -> list[str]:
    out = []
    for c in _entries(attr, "bgp.update.path_attribute.community_as"):
        out.append(
            f"{c['bgp.update.path_attribute.community_as']}:{c['bgp.update.path_attribute.community_value']}"
        )
    for w in fields(attr, "bgp.update.path_attribute.community_wellknown"):
        out.append(canon("community", int(w, 16)))
    return out


# --------------------------------------------------------------------------- per message vs tshark


def _check_attribute(code: int, attr: dict[str, Any], u: Update) -> None:
    """One attribute's value as tshark shows it against vpe's decode."""
    got = u.attributes.get(code)
    f = "bgp.update.path_attribute."
    if code == AttrCode.ORIGIN:
        assert isinstance(got, Origin) and int(got.value) == int(attr[f + "origin"])
    elif code == AttrCode.AS_PATH:
        assert isinstance(got, AsPath)
        assert [(int(s.type), s.asns) for s in got.segments] == _shark_as_path(attr)
    elif code == AttrCode.NEXT_HOP:
        assert isinstance(got, NextHop) and canon("ip", got.address) == canon(
            "ip", attr[f + "next_hop"]
        )
    elif code == AttrCode.MULTI_EXIT_DISC:
        assert isinstance(got, Med) and got.value == int(attr[f + "multi_exit_disc"])
    elif code == AttrCode.LOCAL_PREF:
        assert isinstance(got, LocalPref) and got.value == int(attr[f + "local_pref"])
    elif code == AttrCode.COMMUNITIES:
        assert isinstance(got, Communities)
        assert sorted(canon("community", v) for v in got.values) == sorted(_shark_communities(attr))
    elif code == AttrCode.ORIGINATOR_ID:
        assert isinstance(got, OriginatorId) and str(got.address) == attr[f + "originator_id"]
    elif code == AttrCode.CLUSTER_LIST:
        assert isinstance(got, ClusterList)
        assert [str(i) for i in got.ids] == _listify(fields(attr, "bgp.path_attribute.cluster_id"))
    elif code == AttrCode.EXTENDED_COMMUNITIES:
        assert isinstance(got, ExtendedCommunities)
        theirs = [canon("ext", e) for e in _listify(fields(attr, "bgp.ext_community"))]
        assert [canon("ext", v) for v in got.values] == theirs
    elif code == AttrCode.MP_REACH_NLRI:
        mp = u.mp_reach
        assert mp is not None
        assert (mp.family.afi, mp.family.safi) == (
            int(attr[f + "mp_reach_nlri.afi"]),
            int(attr[f + "mp_reach_nlri.safi"]),
        )
        hops = fields(attr, f + "mp_reach_nlri.next_hop.ipv4") + fields(
            attr, f + "mp_reach_nlri.next_hop.ipv6"
        )
        ours: list[IPAddress] = [a for a in (mp.next_hop, mp.link_local) if a is not None]
        assert [canon("ip", a) for a in ours] == [canon("ip", h) for h in hops]
    elif code == AttrCode.MP_UNREACH_NLRI:
        mu = u.mp_unreach
        assert mu is not None
        assert (mu.family.afi, mu.family.safi) == (
            int(attr[f + "mp_unreach_nlri.afi"]),
            int(attr[f + "mp_unreach_nlri.safi"]),
        )
    # other codes: presence and flags are checked by the caller


def _check_against_tshark(name: str, d: Decoded) -> str:
    """Assert everything tshark decoded of one UPDATE; returns a note on what was skipped."""
    u, shark, where = d.update, d.shark, f"{name} frame {d.msg.frame} {d.msg.direction}"
    assert u.action == UpdateAction.NONE and not u.errors, f"{where}: {u.errors}"
    attrs = _shark_attrs(shark)
    # attribute presence and flags, in wire order
    codes = [int(a["bgp.update.path_attribute.type_code"]) for a in attrs]
    ours = {a.code: a.flags for a in u.attributes}
    if u.mp_reach is not None:
        ours[AttrCode.MP_REACH_NLRI] = 0x80
    if u.mp_unreach is not None:
        ours[AttrCode.MP_UNREACH_NLRI] = 0x80
    assert sorted(ours) == sorted(codes), where
    for a, code in zip(attrs, codes, strict=True):
        theirs_flags = int(a["bgp.update.path_attribute.flags"], 16)
        assert ours[code] & ATTR_FLAG_BITS == theirs_flags & ATTR_FLAG_BITS, (where, code)
        _check_attribute(code, a, u)
    # routes, per family
    texts = shark.get("_nlri_text", {})
    assert [_vpe_nlri(n) for n in u.nlri] == _shark_unicast(shark, "bgp.update.nlri"), where
    assert [_vpe_nlri(n) for n in u.withdrawn] == _shark_unicast(
        shark, "bgp.update.withdrawn_routes"
    ), where
    note = ""
    for code, mp, text_key, withdrawn in (
        (AttrCode.MP_REACH_NLRI, u.mp_reach, "mp_reach", False),
        (AttrCode.MP_UNREACH_NLRI, u.mp_unreach, "mp_unreach", True),
    ):
        if mp is None:
            continue
        attr = attrs[codes.index(code)]
        key = "bgp.update.path_attribute." + ("mp_unreach_nlri" if withdrawn else "mp_reach_nlri")
        if name in TSHARK_BLIND_ADDPATH_VPN and mp.family in d.ctx.addpath and mp.nlri:
            # tshark 4.0 misreads ADD-PATH VPN NLRI (flags it malformed, or shows none at
            # all when the path id's first octet is 0); the README list is the oracle.
            note = "nlri-by-readme"
            continue
        theirs = _shark_nlri(mp.family, attr.get(key, {}), texts.get(text_key, []), withdrawn)
        assert theirs is not None, f"{where}: tshark found this NLRI malformed"
        ours_nlri = [_vpe_nlri(n) for n in mp.nlri]
        if mp.family in d.ctx.addpath:  # tshark shows no path id in MP attributes
            ours_nlri = [(rd, p, lab, 0) for rd, p, lab, _ in ours_nlri]
        if withdrawn:
            ours_nlri = [(rd, p, (), pid) for rd, p, _, pid in ours_nlri]
            theirs = [(rd, p, (), pid) for rd, p, _, pid in theirs]
        assert ours_nlri == theirs, where
    # End-of-RIB (RFC 4724): an UPDATE with nothing in it, or only an empty MP_UNREACH
    shark_eor = (
        not attrs
        and not shark.get("bgp.update.nlri")
        and int(shark["bgp.update.withdrawn_routes.length"]) == 0
    )
    if codes == [AttrCode.MP_UNREACH_NLRI]:
        shark_eor = attrs[0].get("bgp.update.path_attribute.mp_unreach_nlri", "") == ""
    eor = u.end_of_rib()
    assert (eor is not None) == shark_eor, where
    if eor is not None and codes:
        assert (eor.afi, eor.safi) == (
            int(attrs[0]["bgp.update.path_attribute.mp_unreach_nlri.afi"]),
            int(attrs[0]["bgp.update.path_attribute.mp_unreach_nlri.safi"]),
        )
    return note


@pytest.mark.parametrize("name", CAPTURE_NAMES)
def test_updates_match_tshark(name: str) -> None:
    ds = decoded(name)
    assert ds, f"{name}: no UPDATE"
    notes = Counter(_check_against_tshark(name, d) for d in ds)
    if name in TSHARK_BLIND_ADDPATH_VPN:
        assert notes["nlri-by-readme"], "tshark decodes ADD-PATH VPN now: compare against it"


def test_no_rfc7606_action_in_captures() -> None:
    for name in CAPTURE_NAMES:
        for d in decoded(name):
            assert d.update.action == UpdateAction.NONE, (name, d.msg.frame, d.update.errors)


def test_end_of_rib_markers() -> None:
    """BIRD, FRR and ExaBGP send End-of-RIB per family as an empty MP_UNREACH."""
    seen: dict[str, set[str]] = {}
    for name in CAPTURE_NAMES:
        for d in decoded(name):
            fam = d.update.end_of_rib()
            if fam is not None:
                seen.setdefault(name, set()).add(fam.name)
    assert seen["gobgp_bird_vpn_lu"] == {"vpnv4", "vpnv6", "ipv4-labeled-unicast"}
    assert seen["frr_bird_vpn_ebgp"] == {"vpnv4", "vpnv6"}
    assert seen["exabgp_gobgp_addpath_vpn"] == {"vpnv4", "vpnv6"}


# --------------------------------------------------------------------------- re-encoding


def _mask_nlri(data: bytes, addpath: bool, withdrawn: bool) -> bytes:
    """Labeled NLRI with the label TC bits cleared (vpe keeps labels, not TC bits: see
    nlri/labeled.py) and withdrawal compatibility fields set to 0x800000 (their value is
    ignored on receipt, RFC 8277 section 2.4)."""
    out = bytearray(data)
    pos, n = 0, len(out)
    for _ in range(n):
        if pos >= n:
            break
        pos += 4 if addpath else 0
        end = pos + 1 + (out[pos] + 7) // 8
        p = pos + 1
        if withdrawn:
            out[p : p + 3] = b"\x80\x00\x00"
        else:
            while p + 3 <= end:
                out[p + 2] &= 0xF1
                p += 3
                if out[p - 1] & 1:
                    break
        pos = end
    return bytes(out)


def _split(body: bytes, ctx: CodecContext) -> tuple[bytes, dict[int, tuple[int, bytes]], bytes]:
    """(withdrawn octets, code -> (O/T/P flags, comparable value), NLRI octets), whatever
    the attribute order and extended-length bits."""
    wlen = int.from_bytes(body[0:2], "big")
    alen = int.from_bytes(body[2 + wlen : 4 + wlen], "big")
    pos, end = 4 + wlen, 4 + wlen + alen
    attrs: dict[int, tuple[int, bytes]] = {}
    for _ in range(alen):
        if pos >= end:
            break
        flags, code = body[pos], body[pos + 1]
        if flags & EXTENDED_LENGTH:
            vlen, pos = int.from_bytes(body[pos + 2 : pos + 4], "big"), pos + 4
        else:
            vlen, pos = body[pos + 2], pos + 3
        value = body[pos : pos + vlen]
        pos += vlen
        if code in (AttrCode.MP_REACH_NLRI, AttrCode.MP_UNREACH_NLRI):
            fam = Family(int.from_bytes(value[0:2], "big"), value[2])
            head = 4 + value[3] + 1 if code == AttrCode.MP_REACH_NLRI else 3
            if fam.safi in LABELED_SAFIS:
                withdrawn = code == AttrCode.MP_UNREACH_NLRI
                value = value[:head] + _mask_nlri(value[head:], fam in ctx.addpath, withdrawn)
        attrs[code] = (flags & ATTR_FLAG_BITS, bytes(value))
    return body[2 : 2 + wlen], attrs, body[end:]


@pytest.mark.parametrize("name", CAPTURE_NAMES)
def test_updates_reencode_to_same_octets(name: str) -> None:
    identical = 0
    for d in decoded(name):
        again = d.update.encode(d.ctx)
        where = f"{name} frame {d.msg.frame}"
        if again == d.msg.body:
            identical += 1
            continue
        w0, a0, n0 = _split(d.msg.body, d.ctx)
        w1, a1, n1 = _split(again, d.ctx)
        assert w1 == w0, where
        assert n1 == n0, where
        assert a1 == a0, where
        assert decode_update(again, d.ctx) == d.update, where
    if name == "gobgp_gobgp_addpath":
        assert identical == len(decoded(name))  # plain IPv4 unicast: same order, same octets


# --------------------------------------------------------------------------- vs the daemons' RIBs


class Route(NamedTuple):
    """A route as the daemon views can tell it; None where a view does not say."""

    family: str
    rd: str | None
    prefix: str
    labels: tuple[int, ...] | None
    rts: frozenset[str] | None
    next_hop: str | None


ALL_FIELDS = Route._fields


def _project(r: Route, known: tuple[str, ...]) -> Route:
    """``r`` with the fields a view does not show set to None."""
    return Route(
        r.family,
        r.rd,
        r.prefix,
        r.labels if "labels" in known else None,
        r.rts if "rts" in known else None,
        r.next_hop if "next_hop" in known else None,
    )


def _rts(values: Any) -> frozenset[str]:
    return frozenset(v for v in (canon("ext", x) for x in values) if v.startswith("rt:"))


def adj_rib_in(
    name: str, sender: str, receiver: str
) -> dict[tuple[Family, bytes, int], tuple[Route, Update]]:
    """What ``receiver`` holds from ``sender`` after the capture, by vpe's decode."""
    rib: dict[tuple[Family, bytes, int], tuple[Route, Update]] = {}
    for d in decoded(name):
        if (d.sender, d.receiver) != (sender, receiver):
            continue
        u = d.update
        for fam, n in u.withdrawn_routes():
            rib.pop((fam, n.key, n.path_id), None)
        ext = u.attributes.get(AttrCode.EXTENDED_COMMUNITIES)
        rts = _rts(ext.values) if ext is not None else frozenset()
        for fam, n, nh in u.announced():
            rd, prefix, labels, _pid = _vpe_nlri(n)
            hop = canon("ip", nh) if nh is not None else None
            rib[(fam, n.key, n.path_id)] = (Route(fam.name, rd, prefix, labels, rts, hop), u)
    return rib


@dataclass(frozen=True, slots=True)
class View:
    """One daemon's routes from its .rib.json entry."""

    daemon: str
    address: str
    known: tuple[str, ...]
    received: list[Route]
    local: list[Route]


_GOBGP_FAMILIES = {
    "ipv4": "ipv4-unicast",
    "ipv4-labeled": "ipv4-labeled-unicast",
    "vpnv4": "vpnv4",
    "vpnv6": "vpnv6",
    "rtc": "rtc",
}
_BIRD_TABLES = {"vpntab4": "vpnv4", "vpntab6": "vpnv6", "master4": "ipv4-labeled-unicast"}
_EXA_FAMILIES = {
    "ipv4 mpls-vpn": "vpnv4",
    "ipv6 mpls-vpn": "vpnv6",
    "ipv4 unicast": "ipv4-unicast",
    "ipv4 nlri-mpls": "ipv4-labeled-unicast",
    "ipv4 rtc": "rtc",
}


def _gobgp(data: dict[str, Any]) -> tuple[tuple[str, ...], list[Route], list[Route]]:
    received: list[Route] = []
    local: list[Route] = []
    for fam_name, table in data.items():
        fam = _GOBGP_FAMILIES[fam_name]
        for paths in table.values():
            for p in paths:
                nlri = p["nlri"]
                rd = canon("rd", nlri["rd"]) if "rd" in nlri else None
                prefix = nlri["prefix"] if fam == "rtc" else canon("prefix", nlri["prefix"])
                hop: str | None = None
                rts: frozenset[str] = frozenset()
                for a in p["attrs"]:
                    if a["type"] == 14 or (a["type"] == 3 and hop is None):
                        hop = canon("ip", a["nexthop"])
                    if a["type"] == 16:
                        rts = _rts(a["value"])
                r = Route(fam, rd, prefix, canon("labels", nlri.get("labels", [])), rts, hop)
                (received if "neighbor-ip" in p else local).append(r)
    return ALL_FIELDS, received, local


def _frr(data: dict[str, Any]) -> tuple[tuple[str, ...], list[Route], list[Route]]:
    received: list[Route] = []
    local: list[Route] = []
    for afi, table in data.items():
        fam = {"ipv4": "vpnv4", "ipv6": "vpnv6"}[afi]
        for rd, prefixes in table["routes"]["routeDistinguishers"].items():
            for prefix, paths in prefixes.items():
                for p in paths:
                    hop = canon("ip", p["nexthops"][0]["ip"])
                    r = Route(fam, canon("rd", rd), canon("prefix", prefix), None, None, hop)
                    (local if p["peerId"] == "(unspec)" else received).append(r)
    return ("next_hop",), received, local


def _bird(data: dict[str, Any]) -> tuple[tuple[str, ...], list[Route], list[Route]]:
    received: list[Route] = []
    local: list[Route] = []
    for table, routes in data.items():
        fam = _BIRD_TABLES[table]
        for e in routes:
            parts = e["net"].split()
            rd, prefix = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
            attrs = e.get("attrs", {})
            ext = re.findall(r"\((\w+), ([^,]+), ([^)]+)\)", attrs.get("BGP.ext_community", ""))
            hop = attrs.get("BGP.next_hop")
            r = Route(
                fam,
                rd,
                canon("prefix", prefix),
                canon("labels", attrs.get("BGP.mpls_label_stack", "")),
                _rts(tuple(x.strip() for x in t) for t in ext),
                canon("ip", hop) if hop else None,
            )
            (received if e["proto"].startswith("peer_") else local).append(r)
    return ALL_FIELDS, received, local


def _exabgp(data: list[dict[str, Any]]) -> tuple[tuple[str, ...], list[Route], list[Route]]:
    received: list[Route] = []
    for msg in data:
        update = msg["neighbor"]["message"].get("update", {})
        ext = [x["string"] for x in update.get("attribute", {}).get("extended-community", [])]
        for fam_name, by_hop in update.get("announce", {}).items():
            fam = _EXA_FAMILIES[fam_name]
            for hop, nlris in by_hop.items():
                for n in nlris:
                    received.append(
                        Route(
                            fam,
                            n.get("rd"),
                            canon("prefix", n["nlri"]),
                            canon("labels", n.get("label", [])),
                            _rts(ext),
                            canon("ip", hop),
                        )
                    )
    return ALL_FIELDS, received, []


def views(name: str) -> list[View]:
    out = []
    for key, data in rib_views(name).items():
        daemon, address = key.split()[:2]
        if daemon == "gobgpd":
            known, received, local = _gobgp(data)
        elif daemon == "bgpd":
            known, received, local = _frr(data)
        elif daemon == "bird":
            known, received, local = _bird(data)
        elif daemon == "exabgp":
            known, received, local = _exabgp(data)
        else:
            raise AssertionError(f"{name}: unknown daemon view {key!r}")
        out.append(View(daemon, address, known, received, local))
    return out


def _peer_of(name: str, address: str) -> str:
    others = [ip for ip in opens(name) if ip != address]
    assert len(others) == 1, (name, address)
    return others[0]


def _rejected_by_loop(u: Update, receiver_as: int, ibgp: bool) -> bool:
    """An eBGP receiver drops a route whose AS_PATH holds its own AS (RFC 4271 9.1.2)."""
    path = u.attributes.get(AttrCode.AS_PATH)
    return not ibgp and path is not None and receiver_as in set(path.asns())


@pytest.mark.parametrize("name", CAPTURE_NAMES)
def test_routes_match_daemon_views(name: str) -> None:
    """The routes a daemon shows as learned from its peer are the ones vpe decodes
    from that direction (less the ones it must drop for an AS loop); the routes
    it originated are the ones vpe decodes from it (less those RT constraint holds back)."""
    vs = views(name)
    assert vs, f"{name}: no daemon view"
    for v in vs:
        peer = _peer_of(name, v.address)
        me = opens(name)[v.address]
        ibgp = me.asn == opens(name)[peer].asn
        got = adj_rib_in(name, peer, v.address)
        expected = Counter(
            _project(r, v.known) for r, u in got.values() if not _rejected_by_loop(u, me.asn, ibgp)
        )
        assert Counter(_project(r, v.known) for r in v.received) == expected, (
            name,
            v.daemon,
            v.address,
        )
        if not v.local:
            continue
        sent = {(r.family, r.rd, r.prefix) for r, _u in adj_rib_in(name, v.address, peer).values()}
        wanted = _rt_constraint(name, peer, v.address)
        for r in v.local:
            key = (r.family, r.rd, r.prefix)
            if (
                r.family.startswith("vpn")
                and wanted is not None
                and r.rts is not None
                and not r.rts & wanted
            ):
                assert key not in sent, (
                    f"{name}: {key} crossed although {peer} did not ask for {r.rts}"
                )
            else:
                assert key in sent, (
                    f"{name}: {v.daemon} {v.address} originated {key} but vpe saw no such route"
                )


def _rt_constraint(name: str, peer: str, me: str) -> frozenset[str] | None:
    """The RTs ``peer`` asked ``me`` for with RT constraint; None when RTC is not in use."""
    if RTC not in negotiate(opens(name)[me], opens(name)[peer]).families:
        return None
    asked: set[str] = set()
    for r, _u in adj_rib_in(name, peer, me).values():
        if r.family == "rtc":
            asked.add("rt:" + r.prefix.split(":", 1)[1])
    return frozenset(asked)


# --------------------------------------------------------------------------- ADD-PATH VPN (README)

#: The route list of ``exabgp_gobgp_addpath_vpn`` in tests/vectors/README.md (labels of the
#: path-id-3 route from GoBGP's adj-in), as (sender, family, RD, prefix, labels, path id).
ADDPATH_VPN_ROUTES = {
    ("127.0.0.31", "vpnv4", "65000:900", "192.0.2.0/24", (900,), 1),
    ("127.0.0.31", "vpnv4", "65000:900", "192.0.2.0/24", (901,), 2),
    ("127.0.0.31", "vpnv6", "65000:900", "2001:db8:900::/48", (910,), 1),
    ("127.0.0.31", "vpnv6", "65000:900", "2001:db8:900::/48", (911,), 2),
    ("127.0.0.31", "vpnv4", "198.18.0.31:901", "198.51.100.0/24", (902,), 3),
    ("127.0.0.32", "vpnv4", "65000:950", "203.0.113.0/24", (950,), 1),
}


def test_addpath_vpn_routes_match_readme() -> None:
    name = "exabgp_gobgp_addpath_vpn"
    got = set()
    for d in decoded(name):
        assert {f.name for f in d.ctx.addpath} == {"vpnv4", "vpnv6"}
        for fam, n, _nh in d.update.announced():
            rd, prefix, labels, pid = _vpe_nlri(n)
            got.add((d.sender, fam.name, rd, prefix, labels, pid))
    assert got == ADDPATH_VPN_ROUTES
    # the one VPN route tshark cannot show: ExaBGP's own decode carries the path id
    exa = rib_views(name)["exabgp 127.0.0.31 received"]
    infos = [
        n["path-information"]
        for m in exa
        for by_hop in m["neighbor"]["message"]["update"]["announce"].values()
        for ns in by_hop.values()
        for n in ns
    ]
    assert infos == ["0.0.0.1"]


def test_encapsulation_communities_seen() -> None:
    """The README promises MPLS-in-UDP (13) from GoBGP to FRR and VXLAN (8) from GoBGP to ExaBGP."""
    found = set()
    for name in CAPTURE_NAMES:
        for d in decoded(name):
            ext = d.update.attributes.get(AttrCode.EXTENDED_COMMUNITIES)
            for v in ext.of_type(Encapsulation) if ext is not None else ():
                found.add((name, v.tunnel_type))
    assert found == {("gobgp_frr_vpn", 13), ("exabgp_gobgp_addpath_vpn", 8)}


def test_ipv4_unicast_addpath_ids() -> None:
    got = [
        (str(n), n.path_id)
        for d in decoded("gobgp_gobgp_addpath")
        for fam, n, _nh in d.update.announced()
        if fam == IPV4_UNICAST
    ]
    assert got == [("198.51.100.0/24", 1), ("198.51.100.0/24", 2), ("203.0.113.0/24", 1)]
