"""The attachment state machine (vpe.vpn.attachments): pure, over a real VpnService."""

from __future__ import annotations

import pytest

from vpe.vpn.attachments import (
    TRANSITIONS,
    Attachment,
    AttachmentState,
    AttachmentTable,
    InvalidTransition,
    PortDown,
    PortUp,
)
from vpe.vpn.errors import AlreadyExists, NotFound
from vpe.vpn.service import VpnService


def _table() -> AttachmentTable:
    vpn = VpnService("198.18.0.1")
    vpn.add_vrf("red", route_targets=["65000:1"])
    return AttachmentTable(vpn)


def _port(name: str = "vm1", ip: str = "192.0.2.10/24", **kw: object) -> Attachment:
    return Attachment(name, f"tap-{name}", "red", "02:00:00:00:00:01", (ip,), **kw)  # type: ignore[arg-type]


def _announced(outcome: object) -> list[str]:
    return sorted(r.nlri.to_json()["prefix"] for r in outcome.vpn.announce)  # type: ignore[attr-defined]


def test_attach_originates_host_route_and_asks_for_the_port() -> None:
    t = _table()
    out = t.attach(_port())
    assert _announced(out) == ["192.0.2.10/32"]
    assert out.fib == [PortUp(out.attachment)]
    assert t.get("vm1") is out.attachment and out.attachment.state is AttachmentState.ACTIVE
    assert [a.name for a in t.by_vrf("red")] == ["vm1"]


def test_subnet_advertise_and_the_subnet_stays_while_another_port_has_it() -> None:
    t = _table()
    assert _announced(t.attach(_port("vm1", advertise="subnet"))) == ["192.0.2.0/24", "192.0.2.10/32"]
    t.attach(_port("vm2", "192.0.2.11/24", advertise="subnet"))
    out = t.detach("vm1")
    withdrawn = sorted(r.nlri.to_json()["prefix"] for r in out.vpn.withdraw)
    assert withdrawn == ["192.0.2.10/32"]  # the /24 is still vm2's
    assert out.fib == [PortDown("vm1")]
    out = t.detach("vm2")
    assert sorted(r.nlri.to_json()["prefix"] for r in out.vpn.withdraw) == ["192.0.2.0/24", "192.0.2.11/32"]


def test_from_port_direction_originates_nothing() -> None:
    t = _table()
    out = t.attach(_port(direction="from-port"))
    assert out.vpn.announce == [] and out.fib == [PortUp(out.attachment)]


def test_standby_pre_advertises_without_a_port_then_activates() -> None:
    t = _table()
    out = t.attach(_port(state=AttachmentState.STANDBY, sequence=7))
    assert _announced(out) == ["192.0.2.10/32"] and out.fib == []
    act = t.activate("vm1")
    assert act.attachment.state is AttachmentState.ACTIVE and act.attachment.sequence == 7
    assert act.fib == [PortUp(act.attachment)]
    with pytest.raises(InvalidTransition, match="active"):
        t.activate("vm1")
    # detaching a standby attachment removes no port the forwarder never had
    t2 = _table()
    t2.attach(_port(state=AttachmentState.STANDBY))
    assert t2.detach("vm1").fib == []


def test_errors_are_typed_and_leave_the_table_unchanged() -> None:
    t = _table()
    t.attach(_port())
    with pytest.raises(AlreadyExists, match="name: port 'vm1' is already attached"):
        t.attach(_port())
    with pytest.raises(NotFound):
        t.detach("nope")
    with pytest.raises(ValueError, match="does not exist"):
        t.attach(Attachment("vm9", "tap9", "blue", "02:00:00:00:00:09", ("192.0.2.99/24",)))
    with pytest.raises(InvalidTransition):
        t.attach(_port("vm3", "192.0.2.13/24", state=AttachmentState.REDIRECTING))
    assert [a.name for a in t] == ["vm1"]


def test_a_refused_route_undoes_the_routes_already_added(monkeypatch: pytest.MonkeyPatch) -> None:
    t = _table()
    real = t.vpn.add_local_route
    calls: list[str] = []

    def second_refused(vrf: str, prefix: str, **kw: object) -> object:
        calls.append(prefix)
        if len(calls) == 2:
            raise ValueError(f"prefix: {prefix!r} refused")
        return real(vrf, prefix, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(t.vpn, "add_local_route", second_refused)
    two = Attachment("vm2", "tap2", "red", "02:00:00:00:00:02", ("192.0.2.20/24", "2001:db8::20/64"))
    with pytest.raises(ValueError, match="refused"):
        t.attach(two)
    assert calls == ["192.0.2.20/32", "2001:db8::20/128"]
    assert "vm2" not in t and t.vpn.local_routes("red") == []


def test_address_clash_is_found_per_vrf() -> None:
    t = _table()
    t.attach(_port("vm1", "192.0.2.10/24"))
    found = t.address_clash(_port("vm2", "192.0.2.10/25"))
    assert found is not None and found[0].name == "vm1" and found[1] == {"192.0.2.10"}
    assert t.address_clash(_port("vm2", "192.0.2.11/24")) is None


def test_json_round_trip_and_older_rows() -> None:
    a = _port(state=AttachmentState.STANDBY, sequence=3, gateways=("192.0.2.1",))
    assert Attachment.from_json(a.to_json()) == a
    old = a.to_json()
    del old["state"], old["sequence"]
    b = Attachment.from_json(old)
    assert b.state is AttachmentState.ACTIVE and b.sequence == 0


def test_transitions_end_in_detached() -> None:
    assert TRANSITIONS[AttachmentState.DETACHED] == frozenset()
    for state, nxt in TRANSITIONS.items():
        if state is not AttachmentState.DETACHED:
            assert AttachmentState.DETACHED in nxt
