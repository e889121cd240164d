"""Keep Postfix's chroot copies (FEATURES R1) equal to their sources.

Side effects: copies files into /var/spool/postfix/etc. Cheap to call often:
it compares bytes and writes only what differs.
"""

from __future__ import annotations

from pathlib import Path

from mailctl.apply.files import atomic_write

CHROOT = Path("/var/spool/postfix")
SOURCES = ("etc/resolv.conf", "etc/hosts", "etc/services", "etc/localtime",
           "etc/nsswitch.conf", "etc/host.conf")


def sync(chroot: Path = CHROOT, root: Path = Path("/")) -> list[str]:
    """Copy each source that differs from its chroot copy; return what was copied."""
    copied = []
    for rel in SOURCES:
        src = root / rel
        try:
            data = src.read_bytes()
        except FileNotFoundError:
            continue
        dst = chroot / rel
        try:
            if dst.read_bytes() == data and not dst.is_symlink():
                continue
        except (FileNotFoundError, IsADirectoryError):
            pass
        if dst.is_symlink():
            dst.unlink()
        atomic_write(dst, data, 0o644)
        copied.append(rel)
    return copied
