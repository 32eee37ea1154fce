"""The VPN layer says why it refused a request by the error's type; the types stay
the builtins callers caught before, and the messages read as before."""

from __future__ import annotations

import pytest

from vpe.vpn import (
    AlreadyExists,
    Conflict,
    InUse,
    InvalidValue,
    LabelAllocator,
    LeakPolicy,
    NotFound,
    UnknownLeakPolicy,
    UnknownLocalRoute,
    UnknownVrf,
    VpnError,
    VpnService,
)


def svc() -> VpnService:
    s = VpnService("192.0.2.1")
    s.add_vrf("red", rd="65000:1", route_targets=["65000:1"])
    s.add_vrf("blue", route_targets=["65000:2"])
    return s


def test_already_exists_is_a_conflict_and_a_value_error() -> None:
    s = svc()
    with pytest.raises(AlreadyExists, match="name: VRF 'red' already exists") as e:
        s.add_vrf("red")
    assert isinstance(e.value, Conflict) and isinstance(e.value, ValueError)
    s.add_leak_policy(LeakPolicy("p", "red", "blue"))
    with pytest.raises(AlreadyExists, match="leak policy name"):
        s.add_leak_policy(LeakPolicy("p", "red", "blue"))


def test_resources_held_by_others_are_in_use() -> None:
    s = svc()
    with pytest.raises(InUse, match="rd: 65000:1 is already used by VRF 'red'"):
        s.set_rd("blue", "65000:1")
    a = LabelAllocator()
    a.allocate("x")
    with pytest.raises(InUse, match="label: 16 is used"):
        a.reserve(16, "y")
    with pytest.raises(Conflict, match="already holds"):
        a.reserve(17, "x")


def test_unknown_names_are_not_found_and_key_errors_with_plain_messages() -> None:
    s = svc()
    cases: list[tuple[type[NotFound], object]] = [
        (UnknownVrf, lambda: s.vrf("green")),
        (UnknownVrf, lambda: s.set_import_rts("green", [])),
        (UnknownLocalRoute, lambda: s.remove_local_route("red", "192.0.2.0/24")),
        (UnknownLeakPolicy, lambda: s.remove_leak_policy("nope")),
    ]
    for cls, call in cases:
        with pytest.raises(cls) as e:
            call()  # type: ignore[operator]
        err = e.value
        assert isinstance(err, KeyError) and isinstance(err, ValueError) and isinstance(err, VpnError)
        assert not str(err).startswith(("'", '"'))  # not quoted the KeyError way
    with pytest.raises(UnknownVrf) as e2:
        s.vrf("green")
    assert str(e2.value) == "vrf: 'green' does not exist"


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.add_vrf("x", import_rts=["nonsense"]),
        lambda s: s.add_vrf("y", rd="nope"),
        lambda s: s.add_vrf("z", label_mode="per-moon"),
        lambda s: s.set_multipath("red", 0),
        lambda s: s.add_local_route("red", "192.0.2.1/24"),
        lambda s: s.add_local_route("red", "192.0.2.0/24", kind="host"),
        lambda s: s.add_local_route("red", "192.0.2.0/24", kind="static"),
        lambda s: LeakPolicy("q", "red", "red"),
        lambda s: LabelAllocator(hold_down=-1),
    ],
)
def test_bad_values_are_invalid_values(call: object) -> None:
    with pytest.raises(InvalidValue):
        call(svc())  # type: ignore[operator]


def test_leaks_across_tenants_stay_invalid_not_conflict() -> None:
    """Only what said "already" before is a Conflict: the API's status codes stay."""
    s = VpnService("192.0.2.1")
    s.add_vrf("a", tenant="t1")
    s.add_vrf("b", tenant="t2")
    with pytest.raises(InvalidValue) as e:
        s.add_leak_policy(LeakPolicy("x", "a", "b"))
    assert not isinstance(e.value, Conflict)
