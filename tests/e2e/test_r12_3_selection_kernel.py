"""R12.2 / R12.3 / R11.2 at the forwarder level: the eBPF program and the userspace
pipeline choose the same group member for the same packet.

One FIB (a 512-member per-flow group, an 8-member per-prefix group, a route
with a pre-installed backup) goes into the programs' maps and into the
reference pipeline; a few thousand flows are run through both with
``BPF_PROG_TEST_RUN`` and the endpoint each one was sent to is compared.
Then endpoints are declared down (one ``ep_down`` entry each) and the
comparison is repeated: winner down -> runner-up, whole primary set down ->
backup, the kernel never disagreeing (it may punt to the pipeline, which is
then the answer by construction).

Needs root (loading BPF programs) and clang/libbpf-dev.
"""

from __future__ import annotations

import ipaddress
import os
import random
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_lab import ebpf_missing

from vpe.dataplane.driver import NextHop, Port, Route, State
from vpe.dataplane.userspace import packets as P
from vpe.dataplane.userspace.pipeline import Forwarder, ToUnderlay

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="loading BPF programs needs root"),
    pytest.mark.skipif(ebpf_missing() is not None, reason=str(ebpf_missing())),
]

MAC_A = "02:00:00:00:00:01"
GW = "02:00:5e:00:00:01"
UL4 = "198.18.0.1"
BIG = [f"198.18.{2 + i // 250}.{1 + i % 250}" for i in range(512)]
PRIMARY = ["198.18.10.1", "198.18.10.2"]
BACKUP = "198.18.10.9"


def fib(down: tuple[str, ...] = ()) -> State:
    a = Port("a", "vpa", "red", MAC_A, ips=("192.0.2.10/24",), gateway_ips=("192.0.2.1",))
    # arrival order shuffled: the choice must not depend on it
    big = [NextHop.remote(e, 3000 + i) for i, e in enumerate(BIG)]
    random.Random(3).shuffle(big)
    routes = [
        Route("red", "192.0.2.10/32", (NextHop.local("a"),)),
        Route("red", "203.0.113.0/24", tuple(big)),
        Route("red", "198.51.100.0/24", tuple(NextHop.remote(e, 4000 + i)
              for i, e in enumerate(BIG[:8])), "per-prefix"),  # fmt: skip
        Route("red", "198.51.100.0/25", tuple(NextHop.remote(e, 4100) for e in PRIMARY),
              backup=(NextHop.remote(BACKUP, 4200),)),  # fmt: skip
    ]
    return State(ports=(a,), routes=tuple(routes), down_endpoints=down)


@pytest.fixture
def programs() -> Iterator[dict[str, Any]]:
    from vpe.dataplane.ebpf import build
    from vpe.dataplane.ebpf import libbpf as B
    from vpe.dataplane.ebpf import maps as M

    obj = B.BpfObject(str(build.ensure_built()))
    try:
        ul = ipaddress.ip_address(UL4)
        compiled = M.compile_tables(fib(), M.Ids(), lambda p: 1, 1500, None, (ul,))
        for name in M.FIB_MAPS:
            m = obj.map(name)
            for k, v in compiled.tables[name].items():
                m.update(k, v)
        obj.map("cfg").update(M.U32.pack(0), M.CFG.pack(1, 1, 0, 0, ul.packed, bytes(16)))
        punted: list[bytes] = []
        perf = B.PerfBuffer(obj.map("punt_events"), punted.append, lambda _n: None)
        yield {"obj": obj, "B": B, "M": M, "perf": perf, "punted": punted,
               "port": obj.program_fd("vpe_port")}  # fmt: skip
        perf.close()
    finally:
        obj.close()


def frame(dst: str, sport: int, dport: int) -> bytes:
    body = struct.pack("!HHHH", sport, dport, 8 + 4, 0) + b"abcd"
    pkt = P.build_ipv4_header(
        ipaddress.ip_address("192.0.2.10").packed, ipaddress.ip_address(dst).packed, 17, len(body)
    )
    return bytes.fromhex(GW.replace(":", "")) + bytes.fromhex(MAC_A.replace(":", "")) + b"\x08\x00" + pkt + body


def compare(pr: dict[str, Any], ref: Forwarder, frames: list[bytes]) -> dict[str, int]:
    """Each frame through both; returns userspace endpoint counts. The kernel agrees or punts."""
    B = pr["B"]
    counts: dict[str, int] = {}
    punts = 0
    for f in frames:
        outs = ref.from_port("a", f)
        assert len(outs) == 1 and isinstance(outs[0][0], ToUnderlay)
        want = outs[0][0].endpoint
        counts[want] = counts.get(want, 0) + 1
        pr["punted"].clear()
        rc, out, _ns = B.test_run(pr["port"], f)
        if rc == B.TC_ACT_REDIRECT:
            got = str(ipaddress.ip_address(out[30:34]))
            assert got == want, f"{f[30:34].hex()} sport {f[34:36].hex()}: kernel {got}, userspace {want}"
        else:
            pr["perf"].consume()
            assert rc == B.TC_ACT_SHOT and len(pr["punted"]) == 1, rc
            punts += 1
    counts["_punts"] = punts
    return counts


def set_down(pr: dict[str, Any], ref: Forwarder, eps: tuple[str, ...]) -> None:
    from vpe.dataplane.driver import Batch

    ref.apply(Batch(down_endpoints=eps))
    for e in eps:
        pr["obj"].map("ep_down").update(pr["M"].addr_key(0, ipaddress.ip_address(e)), pr["M"].ONE)


def test_r12_3_kernel_and_userspace_pick_the_same_member(programs: dict[str, Any]) -> None:
    pr = programs
    ref = Forwarder([UL4], 1500)
    ref.full_sync(fib())
    rnd = random.Random(12)
    flows = [frame(f"203.0.113.{rnd.randrange(1, 255)}", rnd.randrange(1024, 65535), 80)
             for _ in range(3000)]  # fmt: skip
    counts = compare(pr, ref, flows)
    assert counts.pop("_punts") == 0
    assert len(counts) > 480  # 3000 flows over 512 members: almost all are used
    # per-prefix: one member per prefix, the same in both
    pp = compare(pr, ref, [frame("198.51.100.200", s, 80) for s in range(1000, 1100)])
    assert pp.pop("_punts") == 0 and len(pp) == 1


def test_r11_2_kernel_and_userspace_switch_alike_when_endpoints_die(programs: dict[str, Any]) -> None:
    pr = programs
    ref = Forwarder([UL4], 1500)
    ref.full_sync(fib())
    flows = [frame("198.51.100.7", s, 443) for s in range(2000, 2400)]
    before = compare(pr, ref, flows)
    assert before.pop("_punts") == 0 and set(before) == set(PRIMARY)
    set_down(pr, ref, (PRIMARY[0],))  # one primary down: the other takes all
    one = compare(pr, ref, flows)
    assert one.pop("_punts") == 0 and set(one) == {PRIMARY[1]}
    set_down(pr, ref, (PRIMARY[1],))  # both down: the backup
    both = compare(pr, ref, flows)
    assert both.pop("_punts") == 0 and set(both) == {BACKUP}
    # a big group with two members down: the kernel agrees or punts, never differs
    big_down = tuple(BIG[:2])
    set_down(pr, ref, big_down)
    rnd = random.Random(5)
    flows = [frame("203.0.113.9", rnd.randrange(1024, 65535), 53) for _ in range(1500)]
    got = compare(pr, ref, flows)
    assert not set(got) & set(big_down)
