"""Property tests over every NLRI family: round-trip, re-encode identity, totality.

For each family a hypothesis strategy builds valid route values through the
public constructors; the codec must give them back from their encoding, the
encoding of decoded wire bytes must be the same bytes, and any octets at all
must decode to a list or raise ``NlriError`` (never anything else).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpe.bgp.wire.constants import (
    IPV4_LABELED,
    IPV4_MCAST_VPN,
    IPV4_UNICAST,
    IPV6_LABELED,
    IPV6_MCAST_VPN,
    IPV6_UNICAST,
    RTC,
    VPNV4,
    VPNV6,
    Family,
)
from vpe.bgp.wire.context import DEFAULT_CONTEXT
from vpe.bgp.wire.errors import NlriError
from vpe.bgp.wire.nlri import (
    NLRI_CODECS,
    IPv4LabeledPrefix,
    IPv4McastVpnRoute,
    IPv4Prefix,
    IPv6LabeledPrefix,
    IPv6McastVpnRoute,
    IPv6Prefix,
    LabeledNlri,
    Nlri,
    RouteTargetMembership,
    VPNv4Prefix,
    VPNv6Prefix,
)

FAST = settings(max_examples=200, deadline=None)
ALL_FAMILIES = [
    IPV4_UNICAST,
    IPV6_UNICAST,
    IPV4_LABELED,
    IPV6_LABELED,
    VPNV4,
    VPNV6,
    RTC,
    IPV4_MCAST_VPN,
    IPV6_MCAST_VPN,
]
LABELED_FAMILIES = {IPV4_LABELED, IPV6_LABELED, VPNV4, VPNV6}

path_ids = st.integers(0, 0xFFFFFFFF)
label_values = st.integers(0, 0xFFFFF)


@st.composite
def networks(draw: st.DrawFn, version: int) -> object:
    bits = 32 if version == 4 else 128
    plen = draw(st.integers(0, bits))
    addr = draw(st.integers(0, (1 << bits) - 1))
    return (IPv4Network if version == 4 else IPv6Network)((addr, plen), strict=False)


@st.composite
def unicast(draw: st.DrawFn, cls: type, version: int, pid: bool) -> Nlri:
    return cls.from_network(draw(networks(version)), draw(path_ids) if pid else 0)


@st.composite
def labeled(draw: st.DrawFn, cls: type, version: int, rd: bool, pid: bool) -> Nlri:
    net = draw(networks(version))
    room = (255 - net.prefixlen - (64 if rd else 0)) // 24
    labels = draw(st.lists(label_values, min_size=1, max_size=min(room, 4)))
    path_id = draw(path_ids) if pid else 0
    if rd:
        return cls.from_parts(draw(st.binary(min_size=8, max_size=8)), net, labels, path_id)
    return cls.from_network(net, labels, path_id)


@st.composite
def rtc(draw: st.DrawFn, pid: bool) -> Nlri:
    path_id = draw(path_ids) if pid else 0
    kind = draw(st.sampled_from(["default", "as", "rt"]))
    if kind == "default":
        return RouteTargetMembership.default(path_id)
    asn = draw(st.integers(0, 0xFFFFFFFF))
    if kind == "as":
        return RouteTargetMembership.from_parts(asn, None, path_id=path_id)
    raw = draw(st.binary(min_size=8, max_size=8))
    return RouteTargetMembership.from_parts(asn, raw, draw(st.integers(1, 64)), path_id)


addresses = st.one_of(
    st.integers(0, 2**32 - 1).map(IPv4Address), st.integers(0, 2**128 - 1).map(IPv6Address)
)


@st.composite
def mcast(draw: st.DrawFn, cls: type, pid: bool) -> Nlri:
    path_id = draw(path_ids) if pid else 0
    rd = draw(st.binary(min_size=8, max_size=8))
    kind = draw(st.sampled_from([1, 3, 0]))
    if kind == 1:
        return cls.intra_as_i_pmsi_ad(rd, draw(addresses), path_id)
    if kind == 3:
        src = draw(st.none() | addresses)
        grp = draw(st.none() | addresses)
        return cls.s_pmsi_ad(rd, src, grp, draw(addresses), path_id)
    rtype = draw(st.integers(0, 255).filter(lambda t: t not in (1, 3)))
    return cls.opaque(rtype, draw(st.binary(max_size=48)), path_id)


def routes(family: Family, pid: bool) -> st.SearchStrategy[Nlri]:
    return {
        IPV4_UNICAST: unicast(IPv4Prefix, 4, pid),
        IPV6_UNICAST: unicast(IPv6Prefix, 6, pid),
        IPV4_LABELED: labeled(IPv4LabeledPrefix, 4, False, pid),
        IPV6_LABELED: labeled(IPv6LabeledPrefix, 6, False, pid),
        VPNV4: labeled(VPNv4Prefix, 4, True, pid),
        VPNV6: labeled(VPNv6Prefix, 6, True, pid),
        RTC: rtc(pid),
        IPV4_MCAST_VPN: mcast(IPv4McastVpnRoute, pid),
        IPV6_MCAST_VPN: mcast(IPv6McastVpnRoute, pid),
    }[family]


def _use(nlris: list[Nlri]) -> None:
    """Every human-facing view of a decoded route must work."""
    for n in nlris:
        str(n)
        repr(n)
        n.to_json()
        hash(n)
        for attr in ("prefix", "rd", "origin_as", "route_target", "originating_router", "source", "group"):
            if hasattr(type(n), attr):
                getattr(n, attr)


@pytest.mark.parametrize("addpath", [False, True], ids=["plain", "addpath"])
@pytest.mark.parametrize("family", ALL_FAMILIES, ids=str)
def test_round_trip(family: Family, addpath: bool) -> None:
    codec = NLRI_CODECS[family]

    @FAST
    @given(st.lists(routes(family, addpath), max_size=8))
    def check(nlris: list[Nlri]) -> None:
        wire = codec.encode(nlris, addpath)
        back = codec.decode(wire, addpath)
        assert back == nlris
        assert codec.encode(back, addpath) == wire
        assert b"".join(codec.encode_one(n, addpath) for n in nlris) == wire
        # withdrawals: labels are replaced by the compatibility field
        wd = codec.encode_withdrawn(nlris, addpath)
        got = codec.decode_withdrawn(wd, addpath)
        assert [(n.key, n.path_id) for n in got] == [(n.key, n.path_id) for n in nlris]
        if family in LABELED_FAMILIES:
            assert all(isinstance(n, LabeledNlri) and n.labels == () for n in got)
        else:
            assert got == nlris
        assert codec.encode_withdrawn(got, addpath) == wd
        _use(back)
        # text forms parse back to the same route
        for n in nlris:
            kw = {"labels": n.labels} if isinstance(n, LabeledNlri) else {}
            assert type(n).from_str(str(n), path_id=n.path_id, **kw) == n

    check()


@pytest.mark.parametrize("addpath", [False, True], ids=["plain", "addpath"])
@pytest.mark.parametrize("family", ALL_FAMILIES, ids=str)
def test_totality_random_bytes(family: Family, addpath: bool) -> None:
    codec = NLRI_CODECS[family]

    @FAST
    @given(st.binary(max_size=300))
    def check(data: bytes) -> None:
        pairs = (
            (codec.decode, codec.encode),
            (codec.decode_withdrawn, codec.encode_withdrawn),
        )
        for dec, enc in pairs:
            try:
                got = dec(data, addpath)
            except NlriError as e:
                assert str(e).startswith(family.name + ":")
                continue
            assert isinstance(got, list)
            _use(got)
            # whatever decoded re-encodes and decodes to the same values
            assert dec(enc(got, addpath), addpath) == got

    check()


@pytest.mark.parametrize("addpath", [False, True], ids=["plain", "addpath"])
@pytest.mark.parametrize("family", ALL_FAMILIES, ids=str)
def test_totality_mutated_wire(family: Family, addpath: bool) -> None:
    """Near-valid input (one octet changed, or cut short) reaches the deep checks."""
    codec = NLRI_CODECS[family]

    @FAST
    @given(st.lists(routes(family, addpath), min_size=1, max_size=4), st.data())
    def check(nlris: list[Nlri], data: st.DataObject) -> None:
        wire = bytearray(codec.encode(nlris, addpath))
        i = data.draw(st.integers(0, len(wire) - 1))
        if data.draw(st.booleans()):
            wire[i] = data.draw(st.integers(0, 255))
        else:
            del wire[i:]
        for dec in (codec.decode, codec.decode_withdrawn):
            try:
                _use(dec(bytes(wire), addpath))
            except NlriError as e:
                assert str(e).startswith(family.name + ":")

    check()


@pytest.mark.parametrize("family", ALL_FAMILIES, ids=str)
def test_nexthop_totality(family: Family) -> None:
    codec = NLRI_CODECS[family]

    @FAST
    @given(st.binary(max_size=64))
    def check(data: bytes) -> None:
        try:
            nh, ll = codec.decode_nexthop(data, DEFAULT_CONTEXT)
        except NlriError as e:
            assert f"next hop length {len(data)}" in str(e)
            return
        again = codec.encode_nexthop(nh, ll)
        if family in (VPNV4, VPNV6):
            # the RDs of a VPN next hop are sent as zeros and ignored on receipt
            if len(data) == 48:
                data = bytes(8) + data[8:24] + bytes(8) + data[32:]
            else:
                data = bytes(8) + data[8:]
        assert again == data

    check()


def test_decode_accepts_memoryview_and_bytearray() -> None:
    codec = NLRI_CODECS[VPNV4]
    route = VPNv4Prefix.from_str("65000:1:192.0.2.0/24", [100])
    wire = codec.encode([route], False)
    for form in (memoryview(wire), bytearray(wire)):
        got = codec.decode(form, False)  # type: ignore[arg-type]
        assert got == [route]
        assert type(got[0].key) is bytes
