"""The vector loader against tshark: same messages, same order, same types and lengths.

Why: the captured vectors (tests/vectors/) are only useful as an oracle if
our reassembly of the TCP streams yields exactly the BGP messages tshark
decoded. Later tests compare vpe's decode of ``messages(name)[i].body`` with
``tshark_messages(name)[i]``; this file proves the pairing is right.
"""

from __future__ import annotations

import pytest

from vectors import BGP_HEADER_LEN, captures, fields, messages, tshark_messages

CAPTURE_NAMES = [c.name for c in captures()]
TYPE_NAMES = {1: "OPEN", 2: "UPDATE", 3: "NOTIFICATION", 4: "KEEPALIVE", 5: "ROUTE-REFRESH"}


def test_manifest_lists_captures() -> None:
    assert CAPTURE_NAMES, "tests/vectors/manifest.json lists no captures"
    for c in captures():
        assert c.pcap.is_file(), c.pcap
        assert c.tshark.is_file(), c.tshark


@pytest.mark.parametrize("name", CAPTURE_NAMES)
def test_message_count_matches_tshark(name: str) -> None:
    ours = messages(name)
    theirs = tshark_messages(name)
    assert len(ours) == len(theirs)
    c = next(c for c in captures() if c.name == name)
    assert len(ours) == c.expected_total


@pytest.mark.parametrize("name", CAPTURE_NAMES)
def test_types_lengths_and_frames_match_tshark(name: str) -> None:
    for ours, theirs in zip(messages(name), tshark_messages(name), strict=True):
        assert ours.type == int(theirs["bgp.type"])
        assert len(ours.raw) == int(theirs["bgp.length"])
        assert len(ours.body) == len(ours.raw) - BGP_HEADER_LEN
        assert ours.frame == theirs["_frame"]
        assert ours.direction == f"{theirs['_src']}->{theirs['_dst']}"


@pytest.mark.parametrize("name", CAPTURE_NAMES)
def test_per_type_counts_match_manifest(name: str) -> None:
    counts: dict[str, int] = {}
    for msg in messages(name):
        key = TYPE_NAMES.get(msg.type, str(msg.type))
        counts[key] = counts.get(key, 0) + 1
    c = next(c for c in captures() if c.name == name)
    assert counts == c.expected_by_type


def test_every_capture_has_opens_both_ways() -> None:
    for name in CAPTURE_NAMES:
        opens = {m.direction for m in messages(name) if m.type == 1}
        assert len(opens) == 2, name


def test_fields_walks_nested_tshark_json() -> None:
    # gobgp_frr_vpn carries route distinguishers of types 0, 1 and 2.
    rds = [rd for msg in tshark_messages("gobgp_frr_vpn") for rd in fields(msg, "bgp.rd")]
    assert "65000:100" in rds
    assert "198.18.0.21:101" in rds
    assert "4200000000:102" in rds
