"""Totality: on any octets, every attribute decoder returns an instance or raises
MalformedAttribute -- never IndexError, struct.error, ValueError or anything else."""

from __future__ import annotations

import json

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from vpe.bgp.wire.attributes import ATTRIBUTES
from vpe.bgp.wire.attributes.extended_communities import decode_ext_community
from vpe.bgp.wire.context import CodecContext
from vpe.bgp.wire.errors import MalformedAttribute, UpdateAction

CONTEXTS = [CodecContext(asn4=a, ibgp=i) for a in (True, False) for i in (True, False)]


def _check(code: int, value: bytes) -> None:
    cls = ATTRIBUTES[code]
    for ctx in CONTEXTS:
        try:
            attr = cls.decode(value, ctx)
        except MalformedAttribute as e:
            assert isinstance(e.action, UpdateAction)
            assert e.action in (UpdateAction.ATTRIBUTE_DISCARD, UpdateAction.TREAT_AS_WITHDRAW)
            assert e.reason
            continue
        assert isinstance(attr, cls)
        # whatever decodes must encode and serialise again
        attr.encode_value(ctx)
        json.dumps(attr.to_json())
        hash(attr)


@pytest.mark.parametrize("code", sorted(ATTRIBUTES))
@settings(max_examples=200, deadline=None)
@given(value=st.binary(max_size=300))
@example(value=b"")
@example(value=b"\x00")
@example(value=b"\xff" * 7)
def test_decode_is_total(code: int, value: bytes) -> None:
    _check(code, value)


# structured-ish inputs reach deeper than uniformly random octets
_tlv_like = st.lists(
    st.tuples(st.integers(0, 255), st.binary(max_size=40)).map(
        lambda tv: bytes((tv[0], len(tv[1]))) + tv[1]
    ),
    max_size=6,
).map(b"".join)


@settings(max_examples=200, deadline=None)
@given(ttype=st.sampled_from([2, 8, 11, 13, 99]), subs=_tlv_like, cut=st.integers(0, 8))
def test_tunnel_encap_structured_fuzz(ttype: int, subs: bytes, cut: int) -> None:
    wire = ttype.to_bytes(2, "big") + len(subs).to_bytes(2, "big") + subs
    _check(23, wire)
    _check(23, wire[: max(0, len(wire) - cut)])


@settings(max_examples=200, deadline=None)
@given(segs=_tlv_like, cut=st.integers(0, 5))
def test_as_path_structured_fuzz(segs: bytes, cut: int) -> None:
    _check(2, segs[: max(0, len(segs) - cut)])
    _check(17, segs)


@settings(max_examples=200, deadline=None)
@given(value=st.binary(min_size=8, max_size=8))
def test_every_extended_community_round_trips(value: bytes) -> None:
    ec = decode_ext_community(value)
    assert ec.encode() == value
    assert str(ec)
