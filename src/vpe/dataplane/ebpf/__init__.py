"""The "ebpf" dataplane driver: tc (cls_bpf, direct-action) programs in the kernel.

``vpe_tc.c`` holds the programs, :mod:`.build` compiles them, :mod:`.libbpf`
loads and attaches them and reads and writes their maps (ctypes over
libbpf.so.1), :mod:`.maps` compiles a driver State into map contents, and
:mod:`.driver` is the driver (with the userspace forwarder as its slow path).
See docs/ebpf.md.
"""
