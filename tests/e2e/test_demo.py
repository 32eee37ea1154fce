"""The product's main job: `make demo` (python -m vpe.demo) builds its lab and every matrix cell is as expected.

Three hosts and a route reflector, two tenants sharing 192.0.2.0/24 and
2001:db8:1::/64, a shared-services VPN both reach (R4.1, R4.3); the demo
pings every pair over IPv4 and IPv6 and exits non-zero if any cell differs
from what the route targets say. Run under its own prefix, always torn down.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest

pytestmark = pytest.mark.e2e


def test_demo_matrix_all_cells_as_expected() -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("ping") is None:
        pytest.skip("needs root, iproute2 and ping (apt-get install iputils-ping)")
    prefix = "dm" + uuid.uuid4().hex[:6]
    try:
        r = subprocess.run(
            [sys.executable, "-m", "vpe.demo", "--prefix", prefix],
            capture_output=True, text=True, timeout=240,
        )
        assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
        assert "all 40 cells as expected" in r.stdout, r.stdout[-4000:]
    finally:
        subprocess.run([sys.executable, "-m", "vpe.cli.main", "lab", "down", "--prefix", prefix],
                       capture_output=True, timeout=120)
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert prefix not in left
