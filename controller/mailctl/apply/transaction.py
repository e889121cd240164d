"""One transaction for everything a revision changes, in named phases.

    plan (pure) -> stage -> validate -> swap -> side effects -> reload -> commit

- plan: render the inputs, compare with the live revision, decide which
  daemons reload and what the login stores must hold;
- stage: write the revision into a new directory;
- validate: the daemons' own checkers on the staged files, and nothing else;
- swap: `current` points at the new revision (one rename);
- side effects: sasldb2, system accounts, the Cyrus admin entry, Postfix's
  chroot copies;
- reload: exactly the daemons whose files changed (and Postfix when a chroot
  copy it reads at start did);
- commit: retire and prune old revisions, keep the login digests.

A failure in any phase undoes every phase before it, in reverse order, and
reloads what had been reloaded, so the previous revision serves again; the
error names what failed. `check` runs plan, stage and validate into a
throwaway directory: `mailctl check` refuses exactly what `run` refuses.

Side effects: the filesystem, the login stores, signals to daemons (through
the `Daemons` it is given).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from mailctl.apply import chroot, files, logins, proc, secrets, users, validate
from mailctl.apply.inputs import Inputs
from mailctl.errors import ApplyError, MailctlError
from mailctl.layout import Layout
from mailctl.render import Bundle, render
from mailctl.settings.mechanisms import mechanism


class Daemons(Protocol):
    """What the transaction needs of the supervisor."""

    def reload(self, name: str) -> None: ...


@dataclass(frozen=True)
class Plan:
    bundle: Bundle
    changed: frozenset[str]  # revision paths that differ from the live revision
    reload: tuple[str, ...]  # daemons whose files changed
    logins: logins.LoginPlan


@dataclass
class Outcome:
    revision: Path | None  # None: no file changed
    changed: frozenset[str] = frozenset()
    reloaded: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def changed_paths(bundle: Bundle, live: Path | None) -> frozenset[str]:
    if live is None:
        return frozenset(bundle.files)
    old = files.read_tree(live, list(bundle.files))
    return frozenset(rel for rel, f in bundle.files.items() if old.get(rel) != f.content)


def reloads(bundle: Bundle, changed: frozenset[str]) -> tuple[str, ...]:
    """Pure: the daemons that read one of the changed files."""
    return tuple(
        d.name for d in bundle.daemons if any(c.startswith(r) for r in d.reads for c in changed)
    )


def login_plan(inputs: Inputs) -> logins.LoginPlan:
    """Pure: what sasldb2 and the system accounts must hold for these inputs."""
    settings, mech = inputs.settings, mechanism(inputs.settings.sasl.mechanism)
    keep = frozenset(u.address for u in settings.users)
    return logins.LoginPlan(
        sasldb=dict(inputs.secrets.user_passwords) if mech.store == "sasldb" else None,
        keep=keep,
        accounts=dict(inputs.secrets.user_hashes) if mech.store == "accounts" else {},
        admin_realm=settings.hostname,
    )


def plan(inputs: Inputs, live_files: Callable[[Bundle], frozenset[str]]) -> Plan:
    bundle = render(inputs.settings, inputs.secrets, inputs.facts, inputs.dkim)
    changed = live_files(bundle)
    return Plan(bundle, changed, reloads(bundle, changed), login_plan(inputs))


class Transaction:
    def __init__(
        self,
        inputs: Inputs,
        layout: Layout,
        *,
        runner: proc.Runner = proc.run,
        daemons: Daemons | None = None,
        force: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inputs = inputs
        self.layout = layout
        self.runner = runner
        self.daemons = daemons
        self.force = force  # write and check every file (first start)
        self.clock = clock
        self.outcome = Outcome(None)
        self.plan: Plan | None = None
        self._live: Path | None = None
        self._stage: Path | None = None
        self._swapped = False
        self._logins: logins.LoginChanges | None = None
        self._chroot_touched = False
        self._reloaded: list[str] = []
        self._phase = "plan"

    # --- phases -------------------------------------------------------------------

    def planned(self) -> Plan:
        if self.plan is None:
            raise RuntimeError("the transaction has no plan yet (make_plan first)")
        return self.plan

    def _staged(self) -> Path:
        if self._stage is None:
            raise RuntimeError("the transaction has not staged a revision yet")
        return self._stage

    def _timed(self, name: str, t0: float) -> float:
        now = self.clock()
        self.outcome.timings[name] = round(now - t0, 4)
        return now

    def make_plan(self) -> Plan:
        self._live = files.live_revision(self.layout.etc)
        live = None if self.force else self._live
        self.plan = plan(self.inputs, lambda bundle: changed_paths(bundle, live))
        return self.plan

    def stage(self, root: Path | None = None) -> Path:
        plan = self.planned()
        self._stage = files.new_revision_dir(root or self.layout.etc)
        try:
            files.write_tree(self._stage, plan.bundle.files, self.layout.owners)
        except OSError as exc:
            raise ApplyError(f"cannot write the new revision: {exc}") from None
        return self._stage

    def validate(self) -> None:
        plan = self.planned()
        check_all = self.force or self._live is None
        validate.stage(
            self._staged(),
            plan.bundle,
            None if check_all else plan.changed,
            self._live,
            self.runner,
        )

    def swap(self) -> None:
        files.swap(self._staged(), self.layout.etc)
        self._swapped = True

    def side_effects(self) -> None:
        plan = self.planned()
        key = secrets.state_key(self.layout)
        self._logins = logins.LoginChanges(self.layout, self.runner, key)
        self._logins.apply(plan.logins, secrets.admin_password(self.layout))
        self.outcome.notes += self._logins.notes
        self._chroot_touched = True
        changed = chroot.sync(self.layout.chroot, self.layout.root, self.layout.owners)
        self.outcome.notes += [f"chroot copy of /{rel} updated" for rel in changed]
        if chroot.needs_reload(changed) and "postfix" not in plan.reload:
            self.plan = Plan(plan.bundle, plan.changed, (*plan.reload, "postfix"), plan.logins)

    def reload(self) -> None:
        plan = self.planned()
        if self.daemons is None:
            return
        for name in plan.reload:
            self._reloaded.append(name)
            self.daemons.reload(name)

    def commit_logins(self) -> None:
        if self._logins is not None:
            self._logins.commit()

    def commit(self) -> None:
        self.commit_logins()
        if self._swapped and self._live is not None and self._live != self._stage:
            files.retire(self._live)
        files.prune(self.layout.etc)

    def rollback(self) -> None:
        """Undo every phase that ran, in reverse; the previous revision serves again."""
        if self._logins is not None:
            self._logins.undo()
            self.outcome.notes += [n for n in self._logins.notes if n.startswith("rollback")]
            self._logins = None
        if self._swapped:
            if self._live is not None:
                files.swap(self._live, self.layout.etc)
            else:
                files.current_link(self.layout.etc).unlink(missing_ok=True)
            self._swapped = False
        if self._chroot_touched:
            try:
                chroot.sync(self.layout.chroot, self.layout.root, self.layout.owners)
            except OSError as exc:
                self.outcome.notes.append(f"rollback: chroot copies: {exc}")
        if self._stage is not None:
            shutil.rmtree(self._stage, ignore_errors=True)
            self._stage = None
        if self.daemons is not None:
            for name in self._reloaded:
                try:
                    self.daemons.reload(name)
                except MailctlError as exc:
                    self.outcome.notes.append(f"rollback: {name} reload failed: {exc}")

    # --- the whole -----------------------------------------------------------------

    def run(self) -> Outcome:
        """Every phase, or none: ApplyError (the old revision live again) on failure."""
        t0 = self.clock()
        self._phase = "plan"
        try:
            plan = self.make_plan()
            self._timed("plan", t0)
            if not plan.changed and not self.force:
                # No file changes; the login stores and chroot copies may still.
                with users.locked(self.layout.users):
                    self._phases(
                        ("logins", self.side_effects),
                        ("reload", self.reload),
                        ("commit", self.commit_logins),
                    )
                self.outcome.reloaded = tuple(self._reloaded)
                return self.outcome
            self._phases(("stage", self.stage), ("validate", self.validate))
            with users.locked(self.layout.users):  # the CLI's writes wait, and ours for them
                self._phases(
                    ("swap", self.swap),
                    ("logins", self.side_effects),
                    ("reload", self.reload),
                    ("commit", self.commit),
                )
        except (MailctlError, OSError) as exc:
            self.rollback()
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise ApplyError(
                f"the new settings were not applied ({self._phase}): {reason}"
            ) from exc
        self._timed("total", t0)
        self.outcome.revision = self._stage
        self.outcome.changed = plan.changed
        self.outcome.reloaded = tuple(self._reloaded)
        return self.outcome

    def _phases(self, *steps: tuple[str, Callable[[], object]]) -> None:
        for name, step in steps:
            self._phase = name
            t = self.clock()
            step()
            self._timed(name, t)

    def check(self) -> Bundle:
        """plan, stage and validate into a throwaway directory; nothing goes live."""
        self.force = True
        self._phase = "plan"
        scratch = Path(tempfile.mkdtemp(prefix="mailctl-check-"))
        scratch.chmod(0o755)  # the checkers run as the daemons' users (cyr_info as cyrus)
        try:
            plan = self.make_plan()
            self._phases(("stage", lambda: self.stage(scratch)), ("validate", self.validate))
        except (MailctlError, OSError) as exc:
            raise self._refusal(exc) from exc
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return plan.bundle

    def _refusal(self, exc: MailctlError | OSError) -> ApplyError:
        """The one message `run` and `check` give for a failure in a phase."""
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        return ApplyError(f"the new settings were not applied ({self._phase}): {reason}")
