"""Every path and socket the controller and the daemons share, named once. No side effects.

Two kinds:
- fixed places inside the image, which rendered configs name (the daemons read
  them): module constants;
- the roots the controller writes below, which tests move into a temp dir: a
  `Layout`, built once from the environment in `cli.main` and passed down.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# --- fixed in the image (rendered configs name these) -------------------------

LIVE = "/etc/mailctl/current"  # the live revision, as the daemons see it
CYRUS_RUN = "/run/cyrus"  # Cyrus's sockets, locks and process table
LMTP_SOCKET = f"{CYRUS_RUN}/socket/lmtp"
CYRUS_CONFIGDIR = "/var/lib/cyrus"  # mailboxes.db and the other databases (a volume)
CYRUS_SPOOL = "/var/spool/cyrus"  # the messages (a volume); partition-default is below
SIEVE_DIR = "/var/spool/sieve"
POSTGREY_DB = "/var/lib/postgrey"
FETCHMAIL_STATE = "/var/lib/mailctl/fetchmail"  # fetchmail's UIDs of fetched mail
FETCHMAIL_RUN = "/run/fetchmail"
# OpenDKIM's socket, in Postfix's chroot. A unix socket, not TCP: over loopback TCP each
# milter round trip waited for a delayed ACK, and submissions took 100 ms each.
OPENDKIM_DIR = "/var/spool/postfix/opendkim"
OPENDKIM_SOCKET = f"{OPENDKIM_DIR}/opendkim.sock"
OPENDKIM_MILTER = "unix:opendkim/opendkim.sock"  # Postfix's: relative to the queue directory
OPENDMARC_DIR = "/var/spool/postfix/opendmarc"
OPENDMARC_SOCKET = f"{OPENDMARC_DIR}/opendmarc.sock"
OPENDMARC_MILTER = "unix:opendmarc/opendmarc.sock"
# mailctl.authres: folds the verdicts into one Authentication-Results (user authres)
AUTHRES_DIR = "/var/spool/postfix/authres"
AUTHRES_SOCKET = f"{AUTHRES_DIR}/authres.sock"
AUTHRES_MILTER = "unix:authres/authres.sock"
SRS_KEY_FILE = "/var/lib/mailctl/srs.secret"  # postsrsd's -s: made by apply.secrets
CYRUS_ADMIN = "cyrus"
CYRUS_ADMIN_SOCKET = f"{CYRUS_RUN}/socket/admin"
CYRUS_ADMIN_SASLDB = "/var/lib/mailctl/cyrus-admin.sasldb"
SASLAUTHD_DIR = "/var/spool/postfix/var/run/saslauthd"
SASLAUTHD_MUX = f"{SASLAUTHD_DIR}/mux"
POSTFIX_CONFIG = "/etc/postfix"  # a link to LIVE/postfix
CYR_INFO = "/usr/lib/cyrus/bin/cyr_info"


@dataclass(frozen=True)
class Layout:
    """Where the controller keeps its own files; each a volume or the container layer."""

    etc: Path = Path("/etc/mailctl")  # revisions and the `current` link
    state: Path = Path("/var/lib/mailctl")  # state volume: secrets, caches
    users: Path = Path("/var/lib/mailctl/users")  # user store and sasldb2
    chroot: Path = Path("/var/spool/postfix")  # Postfix's chroot and queue
    root: Path = Path("/")  # where the chroot copies' sources are
    settings_dir: Path = Path("/config")
    # Give files their owners (postfix, cyrus, sasl...): false only for unit tests on a
    # machine that lacks the image's users.
    owners: bool = True

    @classmethod
    def from_env(cls, settings_dir: Path | None = None) -> Layout:
        env = os.environ
        state = Path(env.get("MAILCTL_STATE", "/var/lib/mailctl"))
        return cls(
            etc=Path(env.get("MAILCTL_ETC", "/etc/mailctl")),
            state=state,
            users=Path(env.get("MAILCTL_USERS_DIR", str(state / "users"))),
            settings_dir=settings_dir or Path(env.get("MAILCTL_SETTINGS_DIR", "/config")),
        )

    @property
    def current(self) -> Path:
        return self.etc / "current"

    @property
    def revs(self) -> Path:
        return self.etc / "revs"

    @property
    def settings_file(self) -> Path:
        return self.settings_dir / "settings.yaml"

    @property
    def store(self) -> Path:
        """Users added with `mailctl user add` or the API: `address:crypt-hash` lines."""
        return self.users / "passwd"

    @property
    def dkim(self) -> Path:
        """DKIM keys (keys/<domain>/<selector>.pem, 0600 opendkim) and their states."""
        return self.state / "dkim"

    @property
    def alias_store(self) -> Path:
        """Aliases added with `mailctl alias add` or the API: JSON, address -> targets."""
        return self.users / "aliases.json"

    @property
    def sasldb(self) -> Path:
        return self.users / "sasldb2"

    @property
    def users_lock(self) -> Path:
        return self.users / ".lock"

    @property
    def login_state(self) -> Path:
        """Keyed digests of what the login stores hold (so an apply skips what is equal)."""
        return self.users / "logins.json"

    @property
    def srs_key(self) -> Path:
        """postsrsd's secret (SRS_KEY_FILE in the image)."""
        return self.state / "srs.secret"

    @property
    def applied(self) -> Path:
        """The inputs digest the controller last tried and the outcome (ops wait on it)."""
        return self.state / "applied.json"

    @property
    def hash_cache(self) -> Path:
        """Crypt hashes of password files, keyed by an HMAC (stable renders, random salts)."""
        return self.state / "hashes.json"

    @property
    def state_key(self) -> Path:
        return self.state / "state.key"

    @property
    def admin_secret(self) -> Path:
        return self.state / "cyrus-admin.secret"

    @property
    def admin_sasldb(self) -> Path:
        """The Cyrus admin's own SASL database (CYRUS_ADMIN_SASLDB in the image)."""
        return self.state / "cyrus-admin.sasldb"

    @property
    def tls(self) -> Path:
        return self.state / "tls"
