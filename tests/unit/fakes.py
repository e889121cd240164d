"""Hand-written fakes for the controller's seams (after supervisor's DummyOptions).

`FakeRunner` stands in for `apply.proc.run`: it records every argv and acts out
the few commands whose effect the controller reads back (saslpasswd2 and
sasldblistusers2 keep their entries as JSON in the -f file, so copies and
renames of the database behave as with the real one; openssl passwd draws a
new salt each call). Everything else succeeds with empty output unless a test
says it fails.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from mailctl.errors import CommandError

Done = subprocess.CompletedProcess[str]


class FakeRunner:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.fail: dict[str, str] = {}  # argv[0] (or "argv0 word") -> output of a failure
        self.handlers: dict[str, Callable[[list[str], str | None], Done]] = {
            "saslpasswd2": self._saslpasswd2,
            "sasldblistusers2": self._sasldblistusers2,
            "openssl": self._openssl,
            "postmap": self._postmap,
            "postalias": self._postmap,
        }
        self._salts = itertools.count(1)

    def __call__(
        self,
        argv: Sequence[str],
        *,
        input_text: str | None = None,
        timeout: float = 30.0,
        check: bool = True,
        env: dict[str, str] | None = None,
        openable_output: bool = False,
    ) -> Done:
        del timeout, env, openable_output
        args = [str(a) for a in argv]
        self.calls.append(args)
        for key in (" ".join(args[:2]), args[0]):
            if key in self.fail:
                if check:
                    raise CommandError(args, 1, self.fail[key])
                return Done(args, 1, "", self.fail[key])
        handler = self.handlers.get(Path(args[0]).name)
        if handler is not None:
            return handler(args, input_text)
        return Done(args, 0, "", "")

    def ran(self, program: str) -> list[list[str]]:
        return [c for c in self.calls if Path(c[0]).name == program]

    # --- acted-out commands -----------------------------------------------------

    @staticmethod
    def _db(args: list[str]) -> tuple[Path, dict[str, str]]:
        path = Path(args[args.index("-f") + 1])
        try:
            entries: dict[str, str] = json.loads(path.read_text())
        except (OSError, ValueError):
            entries = {}
        return path, entries

    def _saslpasswd2(self, args: list[str], password: str | None) -> Done:
        path, entries = self._db(args)
        user = f"{args[-1]}@{args[args.index('-u') + 1]}"
        if "-d" in args:
            entries.pop(user, None)
        else:
            entries[user] = password or ""
        path.write_text(json.dumps(entries))
        return Done(args, 0, "", "")

    def _sasldblistusers2(self, args: list[str], _: str | None) -> Done:
        entries = self._db(args)[1]
        return Done(args, 0, "".join(f"{u}: userPassword\n" for u in entries), "")

    @staticmethod
    def _postmap(args: list[str], _: str | None) -> Done:
        """Compiling `type:path` writes path.db (or .lmdb) beside it; -q finds nothing."""
        if "-q" in args:
            return Done(args, 1, "", "")
        kind, _, path = args[-1].partition(":")
        Path(path + {"lmdb": ".lmdb"}.get(kind, ".db")).write_bytes(b"compiled")
        return Done(args, 0, "", "")

    def _openssl(self, args: list[str], password: str | None) -> Done:
        if args[1:3] == ["passwd", "-6"]:
            salt = f"salt{next(self._salts):04d}"
            return Done(args, 0, f"$6${salt}${abs(hash(password)):020d}\n", "")
        return Done(args, 0, "-----BEGIN PUBLIC KEY-----\n", "")


class FakeDaemons:
    """The transaction's view of the supervisor: records reloads, fails when told."""

    def __init__(self) -> None:
        self.reloads: list[str] = []
        self.fail: set[str] = set()

    def reload(self, name: str) -> None:
        self.reloads.append(name)
        if name in self.fail:
            from mailctl.errors import MailctlError

            raise MailctlError(f"{name} refused the reload")


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
