"""What the operations take and give: pydantic models, also the API's schemas. Pure."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr

# Where an entry comes from: the operator's settings file (read-only here), or the
# store on the state volume that `mailctl` and the API write.
Source = Literal["settings", "api"]
Service = Literal["smtp", "imap", "pop"]
QueueName = Literal["active", "deferred", "hold", "incoming", "maildrop"]
QueueAction = Literal["hold", "release", "requeue", "delete"]
DomainKind = Literal["mailbox", "alias", "relay", "local"]

# Passwords: one line of text, bounded; never echoed back or logged.
Password = SecretStr


class Done(BaseModel):
    message: str


class UserEntry(BaseModel):
    address: str
    source: Source


class NewUser(BaseModel):
    address: str = Field(max_length=320)
    password: Password = Field(description="Ignored where another server checks passwords.")


class NewPassword(BaseModel):
    password: Password


class LoginTest(BaseModel):
    password: Password
    service: Service = "smtp"


class LoginResult(BaseModel):
    address: str
    service: Service
    mechanism: str
    ok: bool


class AliasEntry(BaseModel):
    address: str
    targets: list[str]
    source: Source


class NewAlias(BaseModel):
    address: str = Field(max_length=320, description="address, or @domain for a catch-all")
    targets: list[str] = Field(min_length=1, max_length=1000)


class DomainEntry(BaseModel):
    name: str
    kind: DomainKind


class MailboxEntry(BaseModel):
    address: str
    user: bool = Field(description="false: the user is gone, the mail is kept until purged")
    used_kib: int | None
    limit_kib: int | None
    used_ratio: float | None


class QueueRecipient(BaseModel):
    address: str
    delay_reason: str | None = None


class QueueEntry(BaseModel):
    id: str
    queue: str
    arrival_time: int
    age_seconds: int
    size: int
    sender: str
    recipients: list[QueueRecipient]


class QueueFilter(BaseModel):
    queue: QueueName | None = None
    sender: str | None = Field(default=None, description="part of the envelope sender")
    recipient: str | None = Field(default=None, description="part of a recipient address")
    min_age: int | None = Field(default=None, ge=0, description="seconds in the queue, at least")


class QueueMessage(BaseModel):
    id: str
    text: str


class LookupResult(BaseModel):
    table: str
    key: str
    found: bool
    value: str | None


class CheckResult(BaseModel):
    ok: bool
    error: str | None = None
    hostname: str | None = None
    users: int = 0
    aliases: int = 0


class LogLine(BaseModel):
    time: float
    daemon: str
    pid: int | None
    level: str
    queue_id: str | None
    message: str


KeyState = Literal["pending", "active", "retiring", "revoked", "retired"]


class DkimKey(BaseModel):
    """A DKIM key as the operator may see it: the public half and its state, never the
    private one."""

    domain: str
    selector: str
    algorithm: Literal["rsa", "ed25519"] = "rsa"
    state: KeyState
    created: float
    activated: float | None = None
    retiring_since: float | None = None
    record: str = Field(description="The TXT record's text; empty for a retired key.")


class DnsRecord(BaseModel):
    name: str
    type: str
    value: str
    comment: str = ""


CheckState = Literal["ok", "warn", "fail", "unknown"]
CheckName = Literal["mx", "fcrdns", "spf", "dkim", "dmarc", "blocklist"]


class SelfCheck(BaseModel):
    """One finding of the DNS self-check. unknown: DNS gave no usable answer (SERVFAIL,
    a timeout, a blocklist's error code), so nothing can be said either way."""

    check: CheckName
    subject: str = Field(
        description="What was checked: a domain, an address, a DKIM record's name, "
        "or 'ADDRESS on ZONE' for a blocklist."
    )
    state: CheckState
    reason: str


class SelfCheckReport(BaseModel):
    state: CheckState = Field(description="The worst of the checks: fail, unknown, warn, ok.")
    checked_at: float = Field(description="Unix time the lookups were made.")
    cached: bool = Field(description="true: an earlier run's result (see checked_at).")
    next_run_after: float = Field(
        description="Unix time before which even a refresh gets this result again."
    )
    address: str | None = Field(description="The address mail leaves from, as checked.")
    resolver: str = Field(description="The resolver that was asked.")
    checks: list[SelfCheck]
