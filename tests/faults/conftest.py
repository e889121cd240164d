"""The fault tier: one appliance per test, one fault injected while mail streams in."""

from __future__ import annotations

import pytest

from tests.e2e.fixtures import client, make_appliance
from tests.faults.harness import RESULTS

__all__ = ["client", "make_appliance"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/faults/" in str(item.fspath):
            item.add_marker(pytest.mark.faults)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    terminalreporter.section("fault figures")
    head = ("fault", "accepted", "delivered", "lost", "dup", "recovery_s", "max_delay_s")
    rows = [
        (
            f.name,
            str(f.accepted),
            str(f.delivered),
            str(f.lost),
            str(f.duplicates),
            f"{f.recovery_s:.2f}",
            f"{f.max_delay_s:.2f}",
        )
        for f in RESULTS
    ]
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    for row in (head, *rows):
        cells = [row[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        terminalreporter.write_line("  ".join(cells))
    terminalreporter.write_line("")
    for figures in RESULTS:
        terminalreporter.write_line(figures.line())
