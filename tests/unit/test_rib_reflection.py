"""Route reflection (RFC 4456) and iBGP split horizon as pure functions."""

from __future__ import annotations

from ipaddress import IPv4Address, ip_address

import pytest

from vpe.bgp.wire.attributes import (
    AsPath,
    ClusterList,
    LocalPref,
    Origin,
    OriginatorId,
    OriginType,
    PathAttributes,
)
from vpe.bgp.wire.nlri import VPNv4Prefix
from vpe.rib import Path, PeerInfo
from vpe.rib import attrs as A
from vpe.rib.reflection import (
    advertise_targets,
    inbound_loop,
    is_reflection,
    may_advertise,
    outbound_reflection_attributes,
    reflected_attributes,
)

CLIENT1 = PeerInfo(ip_address("127.0.0.2"), IPv4Address("192.0.2.2"), 65000, ibgp=True, rr_client=True)
CLIENT2 = PeerInfo(ip_address("127.0.0.3"), IPv4Address("192.0.2.3"), 65000, ibgp=True, rr_client=True)
NONCLIENT1 = PeerInfo(ip_address("127.0.0.4"), IPv4Address("192.0.2.4"), 65000, ibgp=True)
NONCLIENT2 = PeerInfo(ip_address("127.0.0.5"), IPv4Address("192.0.2.5"), 65000, ibgp=True)
EBGP1 = PeerInfo(ip_address("127.0.0.6"), IPv4Address("192.0.2.6"), 65001, ibgp=False)
EBGP2 = PeerInfo(ip_address("127.0.0.7"), IPv4Address("192.0.2.7"), 65002, ibgp=False)
LOCAL = PeerInfo.local_origin("192.0.2.1", 65000)
ALL = [CLIENT1, CLIENT2, NONCLIENT1, NONCLIENT2, EBGP1, EBGP2]
CLUSTER = IPv4Address("192.0.2.100")


def base() -> PathAttributes:
    return PathAttributes([Origin(OriginType.IGP), AsPath.sequence(), LocalPref(100)])


def targets(src: PeerInfo, rr: bool = True, at: PathAttributes | None = None) -> list[PeerInfo]:
    n = VPNv4Prefix.from_str("65000:1:198.51.100.0/24", labels=(16,))
    return advertise_targets(Path.make(src, n, at or base()), ALL, route_reflector=rr)


def test_from_client_to_everyone_but_itself() -> None:
    assert targets(CLIENT1) == [CLIENT2, NONCLIENT1, NONCLIENT2, EBGP1, EBGP2]


def test_from_non_client_to_clients_and_ebgp_only() -> None:
    assert targets(NONCLIENT1) == [CLIENT1, CLIENT2, EBGP1, EBGP2]


def test_from_ebgp_to_everyone_but_itself() -> None:
    assert targets(EBGP1) == [CLIENT1, CLIENT2, NONCLIENT1, NONCLIENT2, EBGP2]
    assert targets(EBGP1, rr=False) == [CLIENT1, CLIENT2, NONCLIENT1, NONCLIENT2, EBGP2]


def test_local_routes_go_everywhere() -> None:
    assert targets(LOCAL) == ALL
    assert targets(LOCAL, rr=False) == ALL
    assert not may_advertise(CLIENT1, LOCAL, route_reflector=True)


def test_ibgp_split_horizon_without_reflection() -> None:
    assert targets(CLIENT1, rr=False) == [EBGP1, EBGP2]
    assert targets(NONCLIENT1, rr=False) == [EBGP1, EBGP2]


def test_not_back_to_the_originator() -> None:
    at = base().replace(OriginatorId(CLIENT2.router_id))
    assert targets(CLIENT1, at=at) == [NONCLIENT1, NONCLIENT2, EBGP1, EBGP2]


def test_is_reflection() -> None:
    assert is_reflection(CLIENT1, NONCLIENT1)
    assert not is_reflection(EBGP1, CLIENT1)
    assert not is_reflection(CLIENT1, EBGP1)
    assert not is_reflection(LOCAL, CLIENT1)


def test_reflected_attributes_set_originator_and_prepend_cluster() -> None:
    out = reflected_attributes(base(), CLIENT1, CLUSTER)
    assert A.originator_id(out) == CLIENT1.router_id
    assert A.cluster_list(out) == (CLUSTER,)
    again = reflected_attributes(out, NONCLIENT1, IPv4Address("192.0.2.200"))
    assert A.originator_id(again) == CLIENT1.router_id  # kept, not overwritten
    assert A.cluster_list(again) == (IPv4Address("192.0.2.200"), CLUSTER)
    assert A.cluster_list_len(again) == 2


def test_outbound_attributes() -> None:
    reflected = outbound_reflection_attributes(base(), CLIENT1, NONCLIENT1, CLUSTER)
    assert A.cluster_list(reflected) == (CLUSTER,)
    to_ebgp = outbound_reflection_attributes(reflected, CLIENT1, EBGP1, CLUSTER)
    assert A.originator_id(to_ebgp) is None and A.cluster_list(to_ebgp) == ()
    assert outbound_reflection_attributes(base(), EBGP1, CLIENT1, CLUSTER) == base()


@pytest.mark.parametrize(
    ("extra", "asn", "reason"),
    [
        ([OriginatorId(IPv4Address("192.0.2.1"))], None, "ORIGINATOR_ID"),
        ([ClusterList.from_strs(["192.0.2.50", str(CLUSTER)])], None, "CLUSTER_LIST"),
        ([AsPath.sequence(65001, 65000)], 65000, "AS_PATH"),
        ([OriginatorId(IPv4Address("192.0.2.9")), ClusterList.from_strs(["192.0.2.50"])], 65000, None),
        ([AsPath.sequence(65001, 65000)], None, None),
    ],
)
def test_inbound_loop(extra: list, asn: int | None, reason: str | None) -> None:
    at = base().replace(*extra)
    got = inbound_loop(at, IPv4Address("192.0.2.1"), CLUSTER, asn)
    if reason is None:
        assert got is None
    else:
        assert got is not None and reason in got


def test_attribute_accessors() -> None:
    from vpe.bgp.wire.attributes import ExtendedCommunities, Med, RouteTarget

    rt = RouteTarget.from_str("65000:7")
    at = PathAttributes(
        [
            Origin(OriginType.EGP),
            AsPath.sequence(65001, 65002),
            Med(7),
            ExtendedCommunities((rt,)),
        ]
    )
    assert A.origin(at) == 1 and A.med(at) == 7 and A.local_pref(at) == 100
    assert A.local_pref(at, default=0) == 0
    assert A.as_path_len(at) == 2 and A.neighbor_as(at) == 65001
    assert A.as_path_contains(at, 65002) and not A.as_path_contains(at, 65000)
    assert A.route_targets(at) == (rt,)
    empty = PathAttributes()
    assert A.origin(empty) == 2 and A.med(empty) is None and A.as_path_len(empty) == 0
    assert A.neighbor_as(empty) is None and A.route_targets(empty) == ()
    assert A.originator_id(empty) is None and A.cluster_list_len(empty) == 0
    d = A.decision_attrs(at)
    assert (d.local_pref, d.as_path_len, d.origin, d.neighbor_as, d.med) == (100, 2, 1, 65001, 7)
