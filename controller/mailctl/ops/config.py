"""A dry run of settings: the same gathering, plan, stage and validation as a live
apply, with nothing made live. For `mailctl check` and the API's POST /check.

Side effects: reads secret files and the stores; writes a scratch directory
(removed again); runs the daemons' checkers. `save=False`: no state is created.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from mailctl.apply import inputs, proc
from mailctl.apply.transaction import Transaction
from mailctl.errors import MailctlError
from mailctl.layout import Layout
from mailctl.ops.models import CheckResult
from mailctl.settings.loader import FILE_NAME, MAX_FILE_BYTES


def check_file(
    layout: Layout, path: Path | None = None, run: proc.Runner = proc.run
) -> CheckResult:
    """Refuse exactly what the running controller would refuse, with the same message."""
    try:
        gathered = inputs.gather(layout, path, runner=run, save=False)
        Transaction(gathered, layout, runner=run).check()
    except MailctlError as exc:
        return CheckResult(ok=False, error=str(exc))
    s = gathered.settings
    return CheckResult(ok=True, hostname=s.hostname, users=len(s.users), aliases=len(s.aliases))


def check_text(layout: Layout, text: str, run: proc.Runner = proc.run) -> CheckResult:
    """`text` as the settings file, checked against this container's stores and secrets."""
    if len(text.encode()) > MAX_FILE_BYTES:
        return CheckResult(
            ok=False, error=f"the settings are larger than {MAX_FILE_BYTES // 1024} KiB"
        )
    scratch = Path(tempfile.mkdtemp(prefix="mailctl-dryrun-"))
    try:
        path = scratch / FILE_NAME
        path.write_text(text, encoding="utf-8")
        return check_file(layout, path, run)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
