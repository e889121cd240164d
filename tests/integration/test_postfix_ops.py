"""postfix_ops (table lookups, postsuper) and queue.repair against the image's own paths:
/etc/postfix -> /etc/mailctl/current/postfix and the spool, as in the running appliance
(master itself does not run)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailctl.apply import files, postfix_ops, queue, validate
from mailctl.errors import MailctlError
from tests.integration.revision import bundle_for, realistic

ETC = Path("/etc/mailctl")
SPOOL = Path("/var/spool/postfix")


@pytest.fixture(scope="module")
def live() -> Iterator[Path]:
    """A validated revision of the realistic settings, live at the image's own place."""
    assert not files.current_link(ETC).exists(), "the image ships without a live revision"
    bundle = bundle_for(realistic())
    rev = files.new_revision_dir(ETC)
    files.write_tree(rev, bundle.files)
    validate.stage(rev, bundle)
    files.swap(rev, ETC)
    yield rev
    files.current_link(ETC).unlink()
    shutil.rmtree(ETC / "revs")


def test_tables_lists_what_a_lookup_may_read(live: Path) -> None:
    tables = postfix_ops.tables()
    assert tables["virtual"] == "hash:/etc/postfix/virtual"
    assert tables["helo_access.pcre"] == "pcre:/etc/postfix/helo_access.pcre"
    assert tables["client_access.cidr"] == "cidr:/etc/postfix/client_access.cidr"
    assert "relay_passwords" not in tables, "root-only: a lookup would print passwords"
    assert not [name for name in tables if name.endswith((".db", ".cf"))]


def test_lookups_answer_as_postfix_would(live: Path) -> None:
    assert postfix_ops.lookup("virtual", "team@example.com") == (
        "alice@example.com, bob@example.com"
    )
    assert postfix_ops.lookup("virtual", "nobody@example.com") is None
    assert postfix_ops.lookup("aliases", "root") == "alice@example.com"
    assert postfix_ops.lookup("helo_access.pcre", "10-1-2-3.dyn.example") == (
        "REJECT dynamic address"
    )
    assert postfix_ops.lookup("client_access.cidr", "192.0.2.77") == "REJECT no mail from here"
    for table in ("relay_passwords", "../shadow", "main.cf"):
        with pytest.raises(MailctlError, match="no table named"):
            postfix_ops.lookup(table, "x")
    with pytest.raises(MailctlError, match="one non-empty line"):
        postfix_ops.lookup("virtual", "a\nb")


def test_queue_repair_removes_a_crash_leftover_and_runs_postsuper(live: Path) -> None:
    leftover = SPOOL / "incoming/1764647000123456.4242"
    leftover.write_bytes(b"half a message")
    notes = queue.repair(SPOOL)
    assert not leftover.exists()
    assert any("incoming/1764647000123456.4242" in n for n in notes), notes
    assert not [n for n in notes if "did not run" in n or "exited with status" in n], notes
    again = queue.repair(SPOOL)
    assert not [n for n in again if "removed" in n or "exited" in n], again


def test_postsuper_actions_work_while_master_is_down(live: Path) -> None:
    for action in ("hold", "release", "requeue", "delete"):
        postfix_ops.act(action, "ALL")


def test_queue_actions_refuse_bad_arguments(live: Path) -> None:
    with pytest.raises(MailctlError, match="unknown queue action"):
        postfix_ops.act("purge", "ALL")
    with pytest.raises(MailctlError, match="is not a queue ID"):
        postfix_ops.act("delete", "../../etc/passwd")
    with pytest.raises(MailctlError, match="one queue ID"):
        postfix_ops.show("ALL")
