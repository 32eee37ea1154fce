"""Automatic and configured route distinguishers."""

from __future__ import annotations

import pytest

from vpe.bgp.wire.nlri.rd import RouteDistinguisher
from vpe.vpn import RdAllocator, parse_rd


def test_auto_rds_are_router_id_n_unique_and_lowest_free() -> None:
    a = RdAllocator("192.0.2.1")
    assert str(a.allocate("red")) == "192.0.2.1:1"
    assert str(a.allocate("blue")) == "192.0.2.1:2"
    assert str(a.allocate("red")) == "192.0.2.1:1"  # idempotent
    a.release("red")
    assert str(a.allocate("green")) == "192.0.2.1:1"


def test_configured_rd_is_skipped_by_auto_and_duplicates_refused() -> None:
    a = RdAllocator("192.0.2.1")
    a.claim("red", parse_rd("192.0.2.1:1"))
    assert str(a.allocate("blue")) == "192.0.2.1:2"
    with pytest.raises(ValueError, match=r"rd: 192\.0\.2\.1:1 is already used by VRF 'red'"):
        a.claim("green", parse_rd("192.0.2.1:1"))


def test_restore_prefers_previous_rds() -> None:
    a = RdAllocator("192.0.2.1")
    a.allocate("red")
    a.allocate("blue")
    state = a.dump()
    b = RdAllocator("192.0.2.1")
    b.restore(state)
    assert b.allocate("blue") == RouteDistinguisher.from_str("192.0.2.1:2")
    assert b.allocate("red") == RouteDistinguisher.from_str("192.0.2.1:1")
    assert str(b.allocate("new")) == "192.0.2.1:3"


@pytest.mark.parametrize("text", ["", "65000", "65000:x", "1.2.3:4", "65536:4294967296", "0x12"])
def test_bad_rd_names_field_and_value(text: str) -> None:
    with pytest.raises(ValueError) as e:
        parse_rd(text, "rd")
    assert str(e.value).startswith("rd: ") and repr(text) in str(e.value)


def test_bad_router_id() -> None:
    with pytest.raises(ValueError, match="router-id"):
        RdAllocator("not-an-ip")
