"""Keep Postfix's chroot copies (FEATURES R1, S3) equal to their sources.

Side effects: copies files into /var/spool/postfix/etc. Cheap to call often:
it compares bytes and writes only what differs. A copy whose source is gone
is removed, so a deleted sasldb2 cannot keep old passwords working.
"""

from __future__ import annotations

from pathlib import Path

from mailctl.apply.files import atomic_write

CHROOT = Path("/var/spool/postfix")
# path below / (and below the chroot), mode, group
SOURCES: tuple[tuple[str, int, str], ...] = (
    ("etc/resolv.conf", 0o644, "root"),
    ("etc/hosts", 0o644, "root"),
    ("etc/services", 0o644, "root"),
    ("etc/localtime", 0o644, "root"),
    ("etc/nsswitch.conf", 0o644, "root"),
    ("etc/host.conf", 0o644, "root"),
    # /etc/sasldb2 links to the users volume; smtpd (group sasl) reads it for auxprop.
    ("etc/sasldb2", 0o640, "sasl"),
)


def sync(chroot: Path = CHROOT, root: Path = Path("/")) -> list[str]:
    """Copy each source that differs from its chroot copy; return what changed."""
    changed = []
    for rel, mode, group in SOURCES:
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
        atomic_write(dst, data, mode, group=group)
        changed.append(rel)
    return changed
