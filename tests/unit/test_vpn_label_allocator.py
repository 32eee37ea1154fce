"""Label allocation: range, determinism, withdraw-confirmed hold-down, reserve, dump/restore."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vpe.vpn import MAX_LABEL, MIN_LABEL, LabelAllocator, LabelSpaceExhausted


def test_range_and_determinism() -> None:
    a = LabelAllocator()
    b = LabelAllocator()
    la = [a.allocate(("prefix", "red", str(i))) for i in range(5)]
    lb = [b.allocate(("prefix", "red", str(i))) for i in range(5)]
    assert la == lb == [16, 17, 18, 19, 20]
    assert a.allocate(("prefix", "red", "0")) == 16  # same owner, same label
    assert MIN_LABEL == 16 and MAX_LABEL == 2**20 - 1


def test_released_label_not_reused_before_confirm_and_hold_down() -> None:
    a = LabelAllocator(hold_down=30, low=16, high=17)
    x = a.allocate("x", now=0)
    a.allocate("y", now=0)
    assert a.release("x") == x
    assert a.state_of(x) == "pending"
    with pytest.raises(LabelSpaceExhausted):
        a.allocate("z", now=1000)  # withdraw never confirmed
    a.confirm_withdrawn([x], now=10)
    assert a.state_of(x) == "hold-down"
    with pytest.raises(LabelSpaceExhausted):
        a.allocate("z", now=39.9)
    assert a.allocate("z", now=40) == x
    assert a.owner_of(x) == "z"


def test_owner_gets_its_released_label_back() -> None:
    a = LabelAllocator(hold_down=30)
    x = a.allocate("x")
    a.release("x")
    assert a.allocate("x") == x  # pending: revived
    a.release("x")
    a.confirm_withdrawn([x], now=5)
    assert a.allocate("x", now=6) == x  # in hold-down: revived
    assert a.state_of(x) == "used"


def test_fresh_labels_before_matured_ones() -> None:
    a = LabelAllocator(hold_down=0)
    x = a.allocate("x")
    a.release("x")
    a.confirm_withdrawn([x], now=0)
    assert a.allocate("y", now=100) == x + 1


def test_reserve_specific_label() -> None:
    a = LabelAllocator()
    assert a.reserve(100, "p") == 100
    assert a.allocate("q") == 16
    with pytest.raises(ValueError, match="label: 100 is used"):
        a.reserve(100, "other")
    with pytest.raises(ValueError, match="outside"):
        a.reserve(5, "low")
    assert a.reserve(17, "r") == 17
    assert a.allocate("s") == 18  # the counter skips reserved labels
    got = {a.allocate(i) for i in range(100)}
    assert 100 not in got


def test_dump_restore_keeps_labels_and_hold_downs() -> None:
    a = LabelAllocator(hold_down=30)
    red = a.allocate(("vrf", "red"))
    blue = a.allocate(("vrf", "blue"))
    gone = a.allocate(("prefix", "red", "192.0.2.0/24"))
    a.release(("prefix", "red", "192.0.2.0/24"))
    a.confirm_withdrawn([gone], now=100)
    pend = a.allocate("pending")
    a.release("pending")
    state = a.dump(now=110)  # 20 s of hold-down left
    b = LabelAllocator.restore(state, now=0)
    assert b.label_of(("vrf", "red")) == red
    assert b.label_of(("vrf", "blue")) == blue
    assert b.state_of(gone) == "hold-down"
    assert b.state_of(pend) == "pending"
    assert b.allocate(("vrf", "green"), now=0) not in (red, blue, gone, pend)
    b2 = LabelAllocator.restore(state, now=0)
    b2.high = b2._next  # only matured labels left after one more
    b2.allocate("fill", now=0)
    with pytest.raises(LabelSpaceExhausted):
        b2.allocate("later", now=19)
    assert b2.allocate("later", now=20) == gone


def test_restore_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="label allocator state"):
        LabelAllocator.restore({"low": 16}, now=0)


def test_bad_construction() -> None:
    with pytest.raises(ValueError, match="label range"):
        LabelAllocator(low=0)
    with pytest.raises(ValueError, match="hold-down"):
        LabelAllocator(hold_down=-1)


ops = st.lists(
    st.tuples(st.sampled_from(["alloc", "release", "confirm", "tick"]), st.integers(0, 7)),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_no_label_means_two_things_and_hold_down_is_kept(seq: list[tuple[str, int]]) -> None:
    hold = 10.0
    a = LabelAllocator(hold_down=hold, low=16, high=21)
    now = 0.0
    # label -> time its withdrawal was confirmed (None: pending); owner that released it
    released: dict[int, tuple[float | None, int]] = {}
    held: dict[int, int] = {}  # owner -> label
    for op, o in seq:
        if op == "alloc":
            try:
                lab = a.allocate(o, now)
            except LabelSpaceExhausted:
                continue
            assert lab not in held.values() or held.get(o) == lab
            if lab in released:
                when, prev_owner = released.pop(lab)
                assert prev_owner == o or (when is not None and now >= when + hold)
            held[o] = lab
        elif op == "release" and o in held:
            lab = held.pop(o)
            assert a.release(o) == lab
            released[lab] = (None, o)
        elif op == "confirm":
            for lab, (when, owner) in list(released.items()):
                if when is None:
                    released[lab] = (now, owner)
            a.confirm_withdrawn(list(released), now)
        elif op == "tick":
            now += o
        assert all(MIN_LABEL <= lab <= 21 for lab in held.values())
        assert len(set(held.values())) == len(held)
