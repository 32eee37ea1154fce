"""RFC 6793: AS_PATH/AS4_PATH and AGGREGATOR/AS4_AGGREGATOR across 2-octet-only speakers."""

from __future__ import annotations

from ipaddress import IPv4Address

from hypothesis import given, settings
from hypothesis import strategies as st

from vpe.bgp.wire.attributes import (
    Aggregator,
    As4Aggregator,
    As4Path,
    AsPath,
    AsSegment,
    Med,
    Origin,
    PathAttributes,
    SegmentType,
    reconcile_as4,
    split_as4,
)
from vpe.bgp.wire.attributes.as_path import merge_as4_path
from vpe.bgp.wire.constants import AS_TRANS, AttrCode
from vpe.bgp.wire.context import CodecContext
from vpe.bgp.wire.update import decode_update, encode_path_attributes

CTX2 = CodecContext(asn4=False)
ADDR = IPv4Address("192.0.2.1")


def test_split_puts_as_trans_and_as4_path() -> None:
    attrs = PathAttributes([Origin(), AsPath.sequence(65001, 4200000001, 65002)])
    out = split_as4(attrs)
    assert out[AttrCode.AS_PATH] == AsPath.sequence(65001, AS_TRANS, 65002)
    assert out[AttrCode.AS4_PATH] == As4Path.sequence(65001, 4200000001, 65002)
    assert AttrCode.AS4_AGGREGATOR not in out


def test_split_leaves_two_octet_paths_alone() -> None:
    attrs = PathAttributes([Origin(), AsPath.sequence(65001, 65002), Aggregator(65001, ADDR)])
    assert split_as4(attrs) == attrs


def test_split_aggregator() -> None:
    attrs = PathAttributes([AsPath.sequence(65001), Aggregator(4200000001, ADDR)])
    out = split_as4(attrs)
    assert out[AttrCode.AGGREGATOR] == Aggregator(AS_TRANS, ADDR)
    assert out[AttrCode.AS4_AGGREGATOR] == As4Aggregator(4200000001, ADDR)
    assert AttrCode.AS4_PATH not in out


def test_split_drops_confed_segments_from_as4_path() -> None:
    path = AsPath.from_str("(64512 64513) 4200000001 65001")
    out = split_as4(PathAttributes([path]))
    assert out[AttrCode.AS4_PATH] == As4Path.from_str("4200000001 65001")
    assert out[AttrCode.AS_PATH] == AsPath.from_str(f"(64512 64513) {AS_TRANS} 65001")


def test_reconcile_merges_path_prepended_by_old_speaker() -> None:
    # NEW AS 4200000001 sent [4200000001 65010] to OLD AS 65001, which prepended itself.
    attrs = PathAttributes(
        [
            AsPath.sequence(65001, AS_TRANS, 65010),
            As4Path.sequence(4200000001, 65010),
            Med(5),
        ]
    )
    out = reconcile_as4(attrs)
    assert out[AttrCode.AS_PATH] == AsPath.sequence(65001, 4200000001, 65010)
    assert AttrCode.AS4_PATH not in out
    assert out[AttrCode.MULTI_EXIT_DISC] == Med(5)


def test_reconcile_with_set_and_confed_in_front() -> None:
    path = AsPath.from_str(f"(64512) 65001 {{65005 65006}} {AS_TRANS} 65010")
    as4 = As4Path.from_str("4200000001 65010")
    assert merge_as4_path(path, as4) == AsPath.from_str(
        "(64512) 65001 {65005 65006} 4200000001 65010"
    )


def test_reconcile_ignores_longer_as4_path() -> None:
    attrs = PathAttributes([AsPath.sequence(65001), As4Path.sequence(4200000001, 4200000002)])
    out = reconcile_as4(attrs)
    assert out[AttrCode.AS_PATH] == AsPath.sequence(65001)
    assert AttrCode.AS4_PATH not in out


def test_reconcile_aggregator_as_trans() -> None:
    attrs = PathAttributes(
        [
            AsPath.sequence(65001, AS_TRANS),
            As4Path.sequence(4200000001),
            Aggregator(AS_TRANS, ADDR),
            As4Aggregator(4200000001, ADDR),
        ]
    )
    out = reconcile_as4(attrs)
    assert out[AttrCode.AGGREGATOR] == Aggregator(4200000001, ADDR)
    assert out[AttrCode.AS_PATH] == AsPath.sequence(65001, 4200000001)
    assert AttrCode.AS4_AGGREGATOR not in out and AttrCode.AS4_PATH not in out


def test_reconcile_aggregated_by_old_speaker_ignores_as4() -> None:
    # AGGREGATOR is a real 2-octet AS: an OLD speaker aggregated; AS4_* are stale.
    attrs = PathAttributes(
        [
            AsPath.sequence(65001, AS_TRANS),
            As4Path.sequence(4200000001),
            Aggregator(65001, ADDR),
            As4Aggregator(4200000001, ADDR),
        ]
    )
    out = reconcile_as4(attrs)
    assert out[AttrCode.AGGREGATOR] == Aggregator(65001, ADDR)
    assert out[AttrCode.AS_PATH] == AsPath.sequence(65001, AS_TRANS)
    assert AttrCode.AS4_AGGREGATOR not in out and AttrCode.AS4_PATH not in out


def test_reconcile_without_as4_is_identity() -> None:
    attrs = PathAttributes([AsPath.sequence(65001, AS_TRANS)])
    assert reconcile_as4(attrs) is attrs


def _decode_block(block: bytes, ctx: CodecContext) -> PathAttributes:
    """Decode an attribute block through the UPDATE decoder (which reconciles AS4_*)."""
    body = b"\x00\x00" + len(block).to_bytes(2, "big") + block
    u = decode_update(body, ctx)
    assert u.action == 0, u.errors
    return u.attributes


leading_confed = st.lists(
    st.builds(
        AsSegment,
        st.sampled_from([SegmentType.AS_CONFED_SEQUENCE, SegmentType.AS_CONFED_SET]),
        st.lists(st.integers(1, 65535), min_size=1, max_size=4).map(tuple),
    ),
    max_size=2,
)
real_segments = st.lists(
    st.builds(
        AsSegment,
        st.sampled_from([SegmentType.AS_SEQUENCE, SegmentType.AS_SET]),
        st.lists(
            st.one_of(st.integers(1, 65535), st.integers(65536, 2**32 - 1)), min_size=1, max_size=8
        ).map(tuple),
    ),
    max_size=4,
)


@settings(max_examples=200, deadline=None)
@given(
    confed=leading_confed, real=real_segments, agg=st.one_of(st.none(), st.integers(1, 2**32 - 1))
)
def test_split_then_reconcile_is_lossless(
    confed: list[AsSegment], real: list[AsSegment], agg: int | None
) -> None:
    items = [Origin(), AsPath((*confed, *real))]
    if agg is not None:
        items.append(Aggregator(agg, ADDR))
    attrs = PathAttributes(items)
    block = encode_path_attributes(attrs, CTX2)
    assert _decode_block(block, CTX2) == attrs


@settings(max_examples=200, deadline=None)
@given(old=st.lists(st.integers(1, 65535), min_size=1, max_size=5), real=real_segments)
def test_old_speaker_prepend_then_reconcile(old: list[int], real: list[AsSegment]) -> None:
    """An OLD speaker prepends 2-octet ASNs to AS_PATH only; reconcile restores them."""
    attrs = PathAttributes([Origin(), AsPath(tuple(real))])
    sent = split_as4(attrs)
    path2 = sent[AttrCode.AS_PATH].prepend(old[0])
    for a in old[1:]:
        path2 = path2.prepend(a)
    received = sent.replace(path2)
    out = reconcile_as4(received)
    expect = AsPath(tuple(real))
    for a in old:
        expect = expect.prepend(a)
    assert list(out[AttrCode.AS_PATH].asns()) == list(expect.asns())
    assert out[AttrCode.AS_PATH].length() == expect.length()
