"""The few libbpf calls the eBPF driver needs, through ctypes over ``libbpf.so.1``.

No compiled extension and no binding package: the object is opened and
loaded by libbpf (it does the relocations and creates the maps), programs
are attached with libbpf's tc API (netlink, in the caller's network
namespace), maps are read and written with the ``bpf_map_*`` wrappers, and
the punt channel is a libbpf perf buffer whose epoll descriptor joins the
forwarder's selector loop.

Every failure raises :class:`BpfError` with the call, the object it was
about and the kernel's error text.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import Callable, Iterator

BPF_ANY = 0
BPF_NOEXIST = 1

BPF_TC_INGRESS = 1
BPF_TC_EGRESS = 2
BPF_TC_F_REPLACE = 1

#: tc filter handle and priority of vpe's programs (a fixed pair, so a
#: restarted forwarder finds and replaces what a crashed one left behind)
TC_HANDLE = 0x7650
TC_PRIORITY = 1


class BpfError(OSError):
    """A libbpf / bpf(2) call failed: ``what`` names the call and its object."""

    def __init__(self, what: str, err: int) -> None:
        err = abs(err)
        super().__init__(err, f"{what}: {os.strerror(err)}")
        self.what = what


class _TcHook(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("ifindex", ctypes.c_int),
        ("attach_point", ctypes.c_int),
        ("parent", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
    ]


class _TcOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("prog_fd", ctypes.c_int),
        ("flags", ctypes.c_uint32),
        ("prog_id", ctypes.c_uint32),
        ("handle", ctypes.c_uint32),
        ("priority", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
    ]


class _TestRunOpts(ctypes.Structure):
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("data_in", ctypes.c_void_p),
        ("data_out", ctypes.c_void_p),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_void_p),
        ("ctx_out", ctypes.c_void_p),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("repeat", ctypes.c_int),
        ("duration", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    ]


SampleFn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32)
LostFn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64)

_lib: ctypes.CDLL | None = None


def lib() -> ctypes.CDLL:
    """libbpf, loaded once; :class:`BpfError` (ENOENT) when it is not installed."""
    global _lib
    if _lib is not None:
        return _lib
    name = ctypes.util.find_library("bpf") or "libbpf.so.1"
    try:
        L = ctypes.CDLL(name, use_errno=True)
    except OSError:
        try:
            L = ctypes.CDLL("libbpf.so.1", use_errno=True)
        except OSError:
            raise BpfError("load libbpf.so.1 (Debian package libbpf1)", errno.ENOENT) from None
    vp, i, u32, u64, sz = (
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_uint32,
        ctypes.c_uint64,
        ctypes.c_size_t,
    )
    for fname, res, args in (
        ("bpf_object__open_file", vp, [ctypes.c_char_p, vp]),
        ("bpf_object__load", i, [vp]),
        ("bpf_object__close", None, [vp]),
        ("bpf_object__find_program_by_name", vp, [vp, ctypes.c_char_p]),
        ("bpf_object__find_map_by_name", vp, [vp, ctypes.c_char_p]),
        ("bpf_program__fd", i, [vp]),
        ("bpf_map__fd", i, [vp]),
        ("bpf_map__max_entries", u32, [vp]),
        ("bpf_map__key_size", u32, [vp]),
        ("bpf_map__value_size", u32, [vp]),
        ("bpf_map_update_elem", i, [i, vp, vp, u64]),
        ("bpf_map_lookup_elem", i, [i, vp, vp]),
        ("bpf_map_delete_elem", i, [i, vp]),
        ("bpf_map_get_next_key", i, [i, vp, vp]),
        ("bpf_tc_hook_create", i, [vp]),
        ("bpf_tc_hook_destroy", i, [vp]),
        ("bpf_tc_attach", i, [vp, vp]),
        ("bpf_tc_detach", i, [vp, vp]),
        ("bpf_tc_query", i, [vp, vp]),
        ("libbpf_num_possible_cpus", i, []),
        ("perf_buffer__new", vp, [i, sz, SampleFn, LostFn, vp, vp]),
        ("perf_buffer__epoll_fd", i, [vp]),
        ("perf_buffer__consume", i, [vp]),
        ("perf_buffer__free", None, [vp]),
        ("bpf_enable_stats", i, [i]),
        ("bpf_prog_test_run_opts", i, [i, vp]),
        ("bpf_obj_get_info_by_fd", i, [i, vp, ctypes.POINTER(u32)]),
    ):
        f = getattr(L, fname)
        f.restype = res
        f.argtypes = args
    _lib = L
    return L


def _check(rc: int, what: str) -> int:
    if rc < 0:
        raise BpfError(what, -rc if rc != -1 else ctypes.get_errno() or errno.EIO)
    return rc


class BpfMap:
    """One map of a loaded object: fixed key/value sizes, bytes in and out."""

    def __init__(self, name: str, fd: int, key_size: int, value_size: int, max_entries: int):
        self.name = name
        self.fd = fd
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        rc = lib().bpf_map_update_elem(self.fd, key, value, flags)
        _check(rc, f"update of map {self.name}")

    def delete(self, key: bytes) -> bool:
        rc = lib().bpf_map_delete_elem(self.fd, key)
        if rc < 0 and -rc == errno.ENOENT:
            return False
        _check(rc, f"delete from map {self.name}")
        return True

    def lookup(self, key: bytes, value_size: int | None = None) -> bytes | None:
        buf = ctypes.create_string_buffer(value_size or self.value_size)
        rc = lib().bpf_map_lookup_elem(self.fd, key, buf)
        if rc < 0 and -rc == errno.ENOENT:
            return None
        _check(rc, f"lookup in map {self.name}")
        return buf.raw

    def keys(self) -> Iterator[bytes]:
        """The keys (a snapshot walk; entries added meanwhile may be missed)."""
        L = lib()
        cur = None
        nxt = ctypes.create_string_buffer(self.key_size)
        for _ in range(self.max_entries + 1):
            rc = L.bpf_map_get_next_key(self.fd, cur, nxt)
            if rc < 0:
                if -rc == errno.ENOENT:
                    return
                _check(rc, f"walk of map {self.name}")
            key = nxt.raw
            yield key
            cur = ctypes.create_string_buffer(key, self.key_size)


class BpfObject:
    """A BPF object file opened and loaded by libbpf (programs verified, maps created)."""

    def __init__(self, path: str) -> None:
        L = lib()
        ctypes.set_errno(0)
        obj = L.bpf_object__open_file(path.encode(), None)
        if not obj:
            raise BpfError(f"open of BPF object {path}", ctypes.get_errno() or errno.EINVAL)
        self._obj: int | None = obj
        try:
            _check(L.bpf_object__load(obj), f"load of BPF object {path} (verifier)")
        except BpfError:
            self.close()
            raise
        self.path = path

    def program_fd(self, name: str) -> int:
        L = lib()
        prog = L.bpf_object__find_program_by_name(self._obj, name.encode())
        if not prog:
            raise BpfError(f"program {name} in {self.path}", errno.ENOENT)
        return int(_check(L.bpf_program__fd(prog), f"fd of program {name}"))

    def map(self, name: str) -> BpfMap:
        L = lib()
        m = L.bpf_object__find_map_by_name(self._obj, name.encode())
        if not m:
            raise BpfError(f"map {name} in {self.path}", errno.ENOENT)
        fd = _check(L.bpf_map__fd(m), f"fd of map {name}")
        return BpfMap(
            name, fd, L.bpf_map__key_size(m), L.bpf_map__value_size(m), L.bpf_map__max_entries(m)
        )

    def close(self) -> None:
        if self._obj:
            lib().bpf_object__close(self._obj)
            self._obj = None


def possible_cpus() -> int:
    return int(_check(lib().libbpf_num_possible_cpus(), "number of possible CPUs"))


def _hook(ifindex: int, point: int) -> _TcHook:
    return _TcHook(ctypes.sizeof(_TcHook), ifindex, point, 0, 0)


def tc_attach(ifindex: int, prog_fd: int, what: str) -> bool:
    """Attach ``prog_fd`` to the tc ingress of ``ifindex`` (clsact created if needed).

    Returns True when this call created the clsact qdisc (then
    :func:`tc_detach` removes it again). A filter of vpe's own handle and
    priority already there (a crashed forwarder's) is replaced.
    """
    L = lib()
    hook = _hook(ifindex, BPF_TC_INGRESS)
    rc = L.bpf_tc_hook_create(ctypes.byref(hook))
    created = rc == 0
    if rc < 0 and -rc != errno.EEXIST:
        _check(rc, f"clsact qdisc on {what}")
    if not created and tc_has_filter(ifindex):
        created = True  # a crashed forwarder's qdisc and filter: ours to remove
    opts = _TcOpts(ctypes.sizeof(_TcOpts), prog_fd, BPF_TC_F_REPLACE, 0, TC_HANDLE, TC_PRIORITY, 0)
    rc = L.bpf_tc_attach(ctypes.byref(hook), ctypes.byref(opts))
    if rc < 0:
        if created:
            both = _hook(ifindex, BPF_TC_INGRESS | BPF_TC_EGRESS)
            L.bpf_tc_hook_destroy(ctypes.byref(both))
        _check(rc, f"tc filter on {what}")
    return created


def tc_has_filter(ifindex: int) -> bool:
    """Whether vpe's filter (its handle and priority) is on the ingress of ``ifindex``."""
    hook = _hook(ifindex, BPF_TC_INGRESS)
    opts = _TcOpts(ctypes.sizeof(_TcOpts), 0, 0, 0, TC_HANDLE, TC_PRIORITY, 0)
    return bool(lib().bpf_tc_query(ctypes.byref(hook), ctypes.byref(opts)) == 0)


def tc_detach(ifindex: int, remove_qdisc: bool) -> None:
    """Remove vpe's filter from ``ifindex`` (and the clsact qdisc when vpe created it).

    An interface that is gone (the VM's veth deleted) is not an error.
    """
    L = lib()
    hook = _hook(ifindex, BPF_TC_INGRESS)
    opts = _TcOpts(ctypes.sizeof(_TcOpts), 0, 0, 0, TC_HANDLE, TC_PRIORITY, 0)
    L.bpf_tc_detach(ctypes.byref(hook), ctypes.byref(opts))
    if remove_qdisc:
        both = _hook(ifindex, BPF_TC_INGRESS | BPF_TC_EGRESS)
        L.bpf_tc_hook_destroy(ctypes.byref(both))


class PerfBuffer:
    """A libbpf perf buffer over a PERF_EVENT_ARRAY map; ``consume`` calls ``on_sample``."""

    def __init__(
        self,
        m: BpfMap,
        on_sample: Callable[[bytes], None],
        on_lost: Callable[[int], None],
        pages: int = 64,
    ) -> None:
        def sample(_ctx: int, _cpu: int, data: int, size: int) -> None:
            on_sample(ctypes.string_at(data, size))

        def lost(_ctx: int, _cpu: int, count: int) -> None:
            on_lost(count)

        # keep the callbacks alive as long as the buffer
        self._cbs = (SampleFn(sample), LostFn(lost))
        ctypes.set_errno(0)
        pb = lib().perf_buffer__new(m.fd, pages, self._cbs[0], self._cbs[1], None, None)
        if not pb:
            raise BpfError(f"perf buffer on map {m.name}", ctypes.get_errno() or errno.EINVAL)
        self._pb: int | None = pb
        self.fd = int(_check(lib().perf_buffer__epoll_fd(pb), "perf buffer epoll fd"))

    def fileno(self) -> int:
        return self.fd

    def consume(self) -> None:
        if self._pb:
            lib().perf_buffer__consume(self._pb)

    def close(self) -> None:
        if self._pb:
            lib().perf_buffer__free(self._pb)
            self._pb = None


#: TC_ACT_* return codes of the programs
TC_ACT_OK = 0
TC_ACT_SHOT = 2
TC_ACT_REDIRECT = 7


def test_run(prog_fd: int, frame: bytes, repeat: int = 1) -> tuple[int, bytes, int]:
    """Run a tc program on ``frame`` without a device (BPF_PROG_TEST_RUN).

    Returns (return code, the frame as the program left it, average ns per run).
    A redirect is only reported, not performed; the packet arrives as on the
    loopback device (``skb->ifindex`` 1).
    """
    out = ctypes.create_string_buffer(len(frame) + 256)
    data = ctypes.create_string_buffer(frame, len(frame))
    opts = _TestRunOpts()
    opts.sz = ctypes.sizeof(_TestRunOpts)
    opts.data_in = ctypes.cast(data, ctypes.c_void_p)
    opts.data_out = ctypes.cast(out, ctypes.c_void_p)
    opts.data_size_in = len(frame)
    opts.data_size_out = len(out)
    opts.repeat = repeat
    _check(lib().bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts)), "test run of a program")
    return opts.retval, out.raw[: opts.data_size_out], opts.duration


def enable_run_stats() -> int | None:
    """Turn on the kernel's per-program run time statistics while the returned fd is open."""
    rc = lib().bpf_enable_stats(0)  # BPF_STATS_RUN_TIME
    return rc if rc >= 0 else None


class _ProgInfo(ctypes.Structure):
    # the head of struct bpf_prog_info up to run_cnt (offsets of the UAPI)
    _fields_ = [("raw", ctypes.c_uint8 * 256)]


def prog_run_stats(prog_fd: int) -> tuple[int, int]:
    """(run_time_ns, run_cnt) of a program (zero unless statistics are enabled)."""
    info = _ProgInfo()
    n = ctypes.c_uint32(ctypes.sizeof(info))
    rc = lib().bpf_obj_get_info_by_fd(prog_fd, ctypes.byref(info), ctypes.byref(n))
    _check(rc, "program info")
    raw = bytes(info.raw)
    # struct bpf_prog_info (UAPI): run_time_ns at offset 192, run_cnt at 200
    return int.from_bytes(raw[192:200], "little"), int.from_bytes(raw[200:208], "little")
