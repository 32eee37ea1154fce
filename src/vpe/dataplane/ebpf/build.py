"""Compile the eBPF programs: ``python -m vpe.dataplane.ebpf.build [--out FILE]``.

Runs Debian's clang (packages clang, llvm, libbpf-dev) on ``vpe_tc.c`` with a
generated CRC-32 table (the flow hash equals zlib's, as the userspace
forwarder computes it). ``make`` runs this as part of the install step; the
driver also runs it when the object is missing or older than its source, so
a fresh clone works without a separate step. No object is kept in git.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "vpe_tc.c"
#: where the object goes by default (next to the source; ``VPE_EBPF_OBJECT`` overrides)
DEFAULT_OBJECT = HERE / "vpe_tc.o"


class BuildError(RuntimeError):
    """clang is missing or refused the source; the message says which and how to fix it."""


def object_path() -> Path:
    env = os.environ.get("VPE_EBPF_OBJECT")
    return Path(env) if env else DEFAULT_OBJECT


def crc32_table() -> str:
    rows = []
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table.append(c)
    for i in range(0, 256, 8):
        rows.append(", ".join(f"0x{v:08x}" for v in table[i : i + 8]))
    return ",\n".join(rows) + "\n"


def _multiarch_include() -> list[str]:
    # <asm/types.h> lives under the multiarch directory on Debian
    for d in Path("/usr/include").glob("*-linux-gnu"):
        if (d / "asm" / "types.h").exists():
            return [f"-I{d}"]
    return []


def build(out: Path | None = None) -> Path:
    """Compile ``vpe_tc.c`` to ``out`` (default :func:`object_path`); return the path."""
    out = out or object_path()
    clang = shutil.which("clang")
    if clang is None:
        raise BuildError(
            "the ebpf driver needs clang to compile its programs: "
            "apt-get install clang llvm libbpf-dev (or run `make deps`)"
        )
    if not Path("/usr/include/bpf/bpf_helpers.h").exists():
        raise BuildError("bpf/bpf_helpers.h is missing: apt-get install libbpf-dev")
    with tempfile.TemporaryDirectory(prefix="vpe-ebpf-") as tmp:
        (Path(tmp) / "crc32_table.h").write_text(crc32_table())
        tmp_out = Path(tmp) / "vpe_tc.o"
        cmd = [
            clang, "-O2", "-g", "-target", "bpf", "-mcpu=v3", "-Wall", "-Wno-unused-function",
            *_multiarch_include(), f"-I{tmp}", "-c", str(SOURCE), "-o", str(tmp_out),
        ]  # fmt: skip
        r = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if r.returncode != 0:
            raise BuildError(f"clang failed on {SOURCE.name}:\n{r.stderr.strip()}")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(tmp_out), str(out))
    return out


def ensure_built() -> Path:
    """The object, compiled first when it is missing or older than its source."""
    out = object_path()
    try:
        fresh = out.stat().st_mtime >= SOURCE.stat().st_mtime
    except OSError:
        fresh = False
    if not fresh:
        build(out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vpe.dataplane.ebpf.build", description=__doc__)
    ap.add_argument("--out", type=Path, help=f"object file (default {DEFAULT_OBJECT.name})")
    args = ap.parse_args(argv)
    try:
        path = build(args.out)
    except BuildError as exc:
        print(f"vpe ebpf build: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
