"""What each saslauthd mechanism means for the rest of the appliance, as data. Pure.

One table instead of `mechanism == ...` checks spread over the layers: where
the passwords are kept, in what form the controller must have them, and how
saslauthd is started for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Store = Literal["pwdfile", "sasldb", "accounts", "remote"]


@dataclass(frozen=True)
class Mechanism:
    name: str
    store: Store  # where the passwords live
    # What the controller needs of a user's password: a crypt hash, the clear text
    # (saslpasswd2 stores it), or nothing (another server checks it).
    password_form: Literal["hash", "clear", "none"]
    # saslauthd -r: hand it the whole login (alice@example.com). sasldb splits the
    # login into user and realm itself, the way saslpasswd2 -u stores it.
    whole_login: bool = True
    # The settings group saslauthd is started with (-O): the remote server's address
    # (sasl.rimap_server) or the directory (sasl.ldap, rendered to saslauthd.conf).
    server: Literal["rimap_server", "ldap"] | None = None

    @property
    def keeps_clear(self) -> bool:
        """The store needs the clear text (sasldb), so a hash will not do."""
        return self.password_form == "clear"  # noqa: S105 (a form's name, not a password)

    @property
    def local_passwords(self) -> bool:
        """Passwords are checked here, so every user needs one."""
        return self.store != "remote"


MECHANISMS: dict[str, Mechanism] = {
    m.name: m
    for m in (
        Mechanism("pam", "pwdfile", "hash"),
        Mechanism("shadow", "accounts", "hash"),
        Mechanism("sasldb", "sasldb", "clear", whole_login=False),
        Mechanism("rimap", "remote", "none", server="rimap_server"),
        Mechanism("ldap", "remote", "none", server="ldap"),
    )
}


def mechanism(name: str) -> Mechanism:
    return MECHANISMS[name]
