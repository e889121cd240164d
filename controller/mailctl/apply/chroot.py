"""Keep Postfix's chroot copies (FEATURES R1, S3) equal to their sources.

Side effects: copies files into /var/spool/postfix/etc. Cheap to call often:
it compares bytes and writes only what differs. A copy whose source is gone
is removed, so a deleted sasldb2 cannot keep old passwords working.
"""

from __future__ import annotations

from pathlib import Path

from mailctl.apply.files import atomic_write

# path below / (and below the chroot), mode, group, read at each use: running smtpd
# and smtp processes keep the resolver and host files they read at start, so a change
# of those means a (graceful) Postfix reload; sasldb2 is opened at each login.
SOURCES: tuple[tuple[str, int, str, bool], ...] = (
    ("etc/resolv.conf", 0o644, "root", False),
    ("etc/hosts", 0o644, "root", False),
    ("etc/services", 0o644, "root", False),
    ("etc/localtime", 0o644, "root", False),
    ("etc/nsswitch.conf", 0o644, "root", False),
    ("etc/host.conf", 0o644, "root", False),
    # /etc/sasldb2 links to the users volume; smtpd (group sasl) reads it for auxprop.
    ("etc/sasldb2", 0o640, "sasl", True),
)


def needs_reload(changed: list[str]) -> bool:
    """Pure: whether these changed copies need Postfix to reload."""
    per_use = {rel for rel, _, _, at_use in SOURCES if at_use}
    return any(rel not in per_use for rel in changed)


def sync(chroot: Path, root: Path = Path("/"), chown: bool = True) -> list[str]:
    """Copy each source that differs from its chroot copy; return what changed."""
    changed = []
    for rel, mode, group, _ in SOURCES:
        dst = chroot / rel
        try:
            data = (root / rel).read_bytes()
        except FileNotFoundError:
            if dst.exists() or dst.is_symlink():
                dst.unlink()
                changed.append(rel)
            continue
        try:
            if dst.read_bytes() == data and not dst.is_symlink():
                continue
        except (FileNotFoundError, IsADirectoryError):
            pass
        if dst.is_symlink():
            dst.unlink()
        atomic_write(dst, data, mode, group=group, chown=chown)
        changed.append(rel)
    return changed
