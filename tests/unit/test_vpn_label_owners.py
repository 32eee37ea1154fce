"""Label owners are typed values; the label state reads what older versions wrote."""

from __future__ import annotations

import json
from typing import Any

import pytest

from vpe.vpn import (
    EndpointLabel,
    LabelAllocator,
    PrefixLabel,
    VpnService,
    VrfLabel,
    owner_from_json,
    owner_to_json,
)


def test_owners_compare_by_type_and_fields() -> None:
    assert VrfLabel("red") == VrfLabel("red")
    assert PrefixLabel("red", "x") != EndpointLabel("red", "x")
    assert len({VrfLabel("red"), VrfLabel("red"), EndpointLabel("red", "vm1")}) == 2


@pytest.mark.parametrize(
    "owner", [VrfLabel("red"), PrefixLabel("red", "192.0.2.0/24"), EndpointLabel("red", "vm1-eth0")]
)
def test_json_round_trip(owner: Any) -> None:
    stored = json.loads(json.dumps(owner_to_json(owner)))
    assert stored["kind"] in ("vrf", "prefix", "endpoint")
    assert owner_from_json(stored) == owner


def test_older_positional_lists_are_read() -> None:
    assert owner_from_json(["vrf", "red"]) == VrfLabel("red")
    assert owner_from_json(["prefix", "red", "192.0.2.0/24"]) == PrefixLabel("red", "192.0.2.0/24")
    assert owner_from_json(["endpoint", "red", "198.51.100.7"]) == EndpointLabel("red", "198.51.100.7")


@pytest.mark.parametrize(
    "garbage", [["vrf"], ["prefix", "red"], ["vlan", "red", "x"], {"kind": "vrf"}, {"kind": "x"}, 7, "red"]
)
def test_garbage_is_refused_by_name(garbage: Any) -> None:
    with pytest.raises(ValueError, match="label owner"):
        owner_from_json(garbage)


def _legacy(state: Any) -> Any:
    """The label state as a version with positional owners wrote it."""
    def back(o: Any) -> Any:
        if isinstance(o, dict):
            return [o["kind"], o["vrf"], *([o[o["kind"]]] if o["kind"] != "vrf" else [])]
        return o

    labels = dict(state["labels"])
    for part in ("used", "pending"):
        labels[part] = [[lab, back(o)] for lab, o in labels[part]]
    labels["cooling"] = [[lab, back(o), rem] for lab, o, rem in labels["cooling"]]
    return {**state, "labels": labels}


def _service(state: Any = None) -> VpnService:
    s = VpnService("192.0.2.1", state=state)
    s.add_vrf("red", import_rts=["65000:1"], export_rts=["65000:1"], label_mode="per-endpoint")
    s.add_vrf("blue", import_rts=["65000:2"], export_rts=["65000:2"], label_mode="per-prefix")
    s.add_local_route("red", "192.0.2.10/32", endpoint="vm1")
    s.add_local_route("red", "192.0.2.0/24", kind="aggregate")
    s.add_local_route("blue", "198.51.100.0/24", kind="static", next_hop="198.51.100.1")
    return s


def test_service_state_is_written_typed_and_restored_from_either_form() -> None:
    s1 = _service()
    before = s1.label_bindings()
    assert set(before.values()) == {
        EndpointLabel("red", "vm1"),
        VrfLabel("red"),
        PrefixLabel("blue", "198.51.100.0/24"),
    }
    state = json.loads(json.dumps(s1.dump_state(now=0.0)))
    assert all(isinstance(o, dict) for _, o in state["labels"]["used"])
    for stored in (state, _legacy(state)):
        s2 = VpnService("192.0.2.1", state=stored)
        # before any replay the restored labels are held by the same (typed) owners
        assert s2.labels.in_use() == before
        assert _service(stored).label_bindings() == before


def test_generic_allocator_keeps_other_owners_as_before() -> None:
    a = LabelAllocator()
    t = a.allocate(("any", "tuple"))
    v = a.allocate(VrfLabel("red"))
    b = LabelAllocator.restore(json.loads(json.dumps(a.dump(now=0))), now=0)
    assert b.label_of(("any", "tuple")) == t
    assert b.label_of(VrfLabel("red")) == v
