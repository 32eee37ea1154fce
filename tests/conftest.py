"""Suite-wide rules.

With CI=true, an interop or e2e test that was skipped fails the run: in CI the
real peers and root are always there, so a skip means a broken install step.
"""

from __future__ import annotations

import os

import pytest

_skipped_required: list[str] = []


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and _ci():
        keywords = report.keywords
        if "interop" in keywords or "e2e" in keywords:
            _skipped_required.append(f"{report.nodeid}: {report.longrepr}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skipped_required:
        print("\nCI=true and these interop/e2e tests were skipped:")
        for line in _skipped_required:
            print("  " + line)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
