"""Directories the daemons need, on volumes that may start empty (a fresh
Kubernetes volume gets no copy of the image's content).

Side effects: creates directories, sets owners, runs Cyrus's makedirs once.
"""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path

from mailctl.apply import proc
from mailctl.layout import (
    AUTHRES_DIR,
    CYRUS_CONFIGDIR,
    CYRUS_RUN,
    CYRUS_SPOOL,
    FETCHMAIL_RUN,
    FETCHMAIL_STATE,
    OPENDKIM_DIR,
    OPENDMARC_DIR,
    POSTGREY_DB,
    SASLAUTHD_DIR,
    SIEVE_DIR,
)

# path, owner, group, mode
DIRS: tuple[tuple[str, str, str, int], ...] = (
    (CYRUS_RUN, "cyrus", "mail", 0o755),
    (f"{CYRUS_RUN}/socket", "cyrus", "mail", 0o750),
    (f"{CYRUS_RUN}/proc", "cyrus", "mail", 0o750),
    (f"{CYRUS_RUN}/lock", "cyrus", "mail", 0o750),
    (CYRUS_CONFIGDIR, "cyrus", "mail", 0o750),
    (f"{CYRUS_SPOOL}/mail", "cyrus", "mail", 0o750),
    (SIEVE_DIR, "cyrus", "mail", 0o750),
    (POSTGREY_DB, "postgrey", "postgrey", 0o750),
    ("/var/lib/mailctl", "root", "root", 0o711),
    (FETCHMAIL_STATE, "fetchmail", "nogroup", 0o700),
    ("/var/lib/mailctl/users", "root", "root", 0o700),
    ("/var/lib/mailctl/dkim", "root", "opendkim", 0o750),
    ("/run/opendkim", "opendkim", "opendkim", 0o755),
    (OPENDKIM_DIR, "opendkim", "postfix", 0o750),
    ("/run/opendmarc", "opendmarc", "opendmarc", 0o755),
    (OPENDMARC_DIR, "opendmarc", "postfix", 0o750),
    (AUTHRES_DIR, "authres", "postfix", 0o750),
    (FETCHMAIL_RUN, "fetchmail", "nogroup", 0o755),
    ("/var/lib/postfix", "postfix", "postfix", 0o700),
    ("/var/spool/postfix/etc", "root", "root", 0o755),
    (SASLAUTHD_DIR, "root", "sasl", 0o710),
)


def ensure(
    dirs: tuple[tuple[str, str, str, int], ...] = DIRS, runner: proc.Runner = proc.run
) -> None:
    for path, owner, group, mode in dirs:
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        os.chown(p, pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid)
        os.chmod(p, mode)
    if not Path(f"{CYRUS_CONFIGDIR}/db").exists():
        runner(["/usr/sbin/cyrus", "makedirs"], timeout=60, check=False)
        for sub in (CYRUS_CONFIGDIR, CYRUS_SPOOL):
            runner(["chown", "-R", "cyrus:mail", sub], timeout=60)


def alias_files(paths: list[str]) -> None:
    """Create the files local aliases append to, owned by the user local(8) writes as.

    Postfix delivers to a file named in a root-owned alias table as
    `default_privs` (nobody); a missing file in a root-owned directory would bounce.
    """
    uid, gid = pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
    for path in paths:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        if not p.exists():
            p.touch(mode=0o600)
            os.chown(p, uid, gid)
