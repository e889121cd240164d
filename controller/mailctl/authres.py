"""One Authentication-Results header for each message from outside (issue 8).

OpenDKIM writes its dkim= verdicts and OpenDMARC its dmarc= verdict, each in an
Authentication-Results header of its own, and policyd-spf writes Received-SPF.
This milter comes after them on port 25 and folds our verdicts into one header:

    Authentication-Results: <hostname>;
        spf=pass smtp.mailfrom=a@example.org;
        dkim=pass (2048-bit key; unprotected) header.d=example.org ...;
        dmarc=pass (p=reject dis=none) header.from=example.org

Received-SPF stays as it is. Postfix shows milters no Received header of its
own, so ours are told by place and content: the run at the very top of what the
earlier milters and policyd-spf put there (see `merge`). A header below that run
which claims our hostname is the client's, and is left alone (OpenDKIM already
removes those: RemoveARFrom).

The merge is pure, with nothing but the standard library, so the unit tests run
it. The milter around it runs under Debian's python3 with python3-milter
(libmilter): `python3 -I authres.py SOCKET HOSTNAME USER`. Postfix talks to it
with default_action=accept: if it fails, the verdicts stay in separate headers.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

AR = "authentication-results"
SPF = "received-spf"

# policyd-spf's result words (RFC 7208 section 8) as Authentication-Results spells them
_SPF_RESULTS = {"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror"}
# A property value written as it stands: a dot-atom address or domain. Anything else
# (a quoted local part, a stray character) is left out rather than escaped.
_PLAIN = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.@-]{1,254}")
_FOLD = re.compile(r"[\r\n]+[ \t]*")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_FIELD = re.compile(r"\b([a-z-]+)=([^;\s]*)")


@dataclass(frozen=True)
class Edit:
    """What to do with the message's headers: delete these Authentication-Results
    (their 1-based positions among the headers of that name, highest first), then
    insert `value` as one new Authentication-Results at the top."""

    delete: tuple[int, ...]
    value: str


def _unfold(value: str) -> str:
    """One line, and no control character that could end it."""
    return _CONTROL.sub("", _FOLD.sub(" ", value)).strip()


def _results_of(value: str, host: str) -> str | None:
    """The verdicts of an Authentication-Results value written under `host`, as one
    string ("dkim=none; dkim-atps=neutral"); None when written under another name.
    "none" (no verdict at all) gives ""."""
    authserv, sep, results = _unfold(value).partition(";")
    words = authserv.split()
    if not sep or not words or words[0].lower() != host.lower():
        return None
    results = results.strip()
    return "" if results.lower() == "none" else results


def _same_address(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False


def _spf_of(value: str, client: str) -> str | None:
    """policyd-spf's Received-SPF about this client as an spf= verdict, or None if it
    is not one. Its form: `Pass (mailfrom) identity=mailfrom; client-ip=...;
    helo=...; envelope-from=a@b; receiver=...`."""
    text = _unfold(value)
    words = text.split(None, 1)
    if not words or words[0].lower() not in _SPF_RESULTS:
        return None
    fields = dict(_FIELD.findall(text))
    if not _same_address(fields.get("client-ip", ""), client):
        return None
    identity = fields.get("identity", "").lower()
    if identity == "mailfrom":
        ptype, key = "smtp.mailfrom", "envelope-from"
    elif identity == "helo":
        ptype, key = "smtp.helo", "helo"
    else:
        return f"spf={words[0].lower()}"
    subject = fields.get(key, "")
    prop = f" {ptype}={subject}" if _PLAIN.fullmatch(subject) else ""
    return f"spf={words[0].lower()}{prop}"


def merge(headers: list[tuple[str, str]], host: str, client: str = "") -> Edit | None:
    """The edit that leaves one Authentication-Results of ours, given the message's
    headers from the top as the milter saw them (Postfix shows milters no Received
    header of its own), and the client's address; None when there is nothing to fold.

    Ours are, at the very top: the Authentication-Results under `host` that OpenDKIM
    and OpenDMARC inserted, each above the last (OpenDKIM has removed any the client
    sent under our name), then the one Received-SPF that policyd-spf prepended, which
    must name this client. The first header of any other kind ends them: the
    client's own begin there. The merged header lists them oldest first."""
    delete: list[int] = []
    verdicts: list[str] = []
    spf: list[str] = []
    seen_ar = 0
    for name, value in headers:
        kind = name.strip().lower()
        if kind == AR:
            seen_ar += 1
            results = _results_of(value, host)
            if results is None:
                break  # another authserv-id: not one of the milters before us
            delete.append(seen_ar)
            if results:
                verdicts.append(results)
        elif kind == SPF:
            verdict = _spf_of(value, client)
            if verdict is not None:
                spf.append(verdict)
            break  # policyd-spf prepends one, below the milters' headers
        else:
            break
    if not delete and not spf:
        return None
    parts = [*spf, *reversed(verdicts)] or ["none"]
    return Edit(tuple(sorted(delete, reverse=True)), f"{host};\n\t" + ";\n\t".join(parts))


def main(argv: list[str]) -> int:  # pragma: no cover - needs libmilter; e2e covers it
    """Run the milter on `socket` (unix:PATH) as `user`, for authserv-id `host`."""
    import contextlib
    import os
    import pwd
    import sys

    import Milter  # type: ignore[import-not-found]  # Debian's python3-milter

    socket, host, user = argv
    account = pwd.getpwnam(user)
    os.setgroups([])
    os.setgid(account.pw_gid)
    os.setuid(account.pw_uid)
    os.umask(0o007)  # the socket: Postfix reaches it through the group
    with contextlib.suppress(FileNotFoundError):  # left by a killed predecessor
        os.unlink(socket.removeprefix("unix:"))

    class Merge(Milter.Base):  # type: ignore[misc]
        def __init__(self) -> None:
            self.headers: list[tuple[str, str]] = []
            self.client = ""

        def connect(self, _name: str, _family: int, hostaddr: object) -> int:
            # (address, port, ...) for IPv4 and IPv6; anything else names no client
            self.client = str(hostaddr[0]) if isinstance(hostaddr, tuple) and hostaddr else ""
            return int(Milter.CONTINUE)

        def envfrom(self, *_: str) -> int:
            self.headers = []  # a new message in the same session
            return int(Milter.CONTINUE)

        def header(self, name: str, value: str) -> int:
            self.headers.append((name, value))
            return int(Milter.CONTINUE)

        def eom(self) -> int:
            # Whatever goes wrong here, the message goes on with its verdicts unfolded:
            # an exception would otherwise become a tempfail of the message.
            try:
                edit = merge(self.headers, host, self.client)
                if edit is not None:
                    for index in edit.delete:
                        self.chgheader("Authentication-Results", index, None)
                    self.addheader("Authentication-Results", edit.value, 0)
            except Exception as exc:  # any failure: leave the headers be
                print(f"authres: left the headers as they were: {exc!r}", file=sys.stderr)
            return int(Milter.ACCEPT)

    # No reply to these: libmilter then tells Postfix not to wait for one.
    for callback in ("connect", "envfrom", "header"):
        setattr(Merge, callback, Milter.noreply(getattr(Merge, callback)))
    Milter.factory = Merge
    Milter.set_flags(Milter.CHGHDRS + Milter.ADDHDRS)
    Milter.runmilter("authres", socket, 300)
    return 0


if __name__ == "__main__":  # pragma: no cover
    import sys as _sys

    _sys.exit(main(_sys.argv[1:]))
