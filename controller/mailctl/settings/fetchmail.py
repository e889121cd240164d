"""fetchmail settings (FEATURES F1-F3): pull mail from providers into local mailboxes. Pure."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from mailctl.settings import names
from mailctl.settings.base import FilePath, Group


def _remote_user(value: str) -> str:
    # A lone surrogate (broken UTF-8 in an env var, or a YAML \ud800 escape) cannot be
    # written to the fetchmailrc at all.
    if (
        not value
        or len(value) > 256
        or any(ord(c) < 0x20 or 0xD800 <= ord(c) <= 0xDFFF for c in value)
    ):
        raise ValueError("must be one line of at most 256 characters of valid UTF-8")
    return value


class Account(Group):
    server: Annotated[str, AfterValidator(names.domain)] = Field(
        description="The provider's POP3/IMAP server name."
    )
    protocol: Literal["pop3", "imap"] = Field(default="pop3")
    port: int | None = Field(default=None, ge=1, le=65535, description="Default: the protocol's.")
    user: Annotated[str, AfterValidator(_remote_user)] = Field(
        description="Login at the provider (quoted safely, any characters but control)."
    )
    password_file: FilePath = Field(description="File holding the provider password (a secret).")
    deliver_to: Annotated[str, AfterValidator(names.address)] = Field(
        description="Local address that receives what is fetched (through Postfix)."
    )
    ssl: bool = Field(default=True, description="TLS from the first byte (pop3s/imaps).")
    verify_certificate: bool = Field(
        default=True, description="Check the provider's certificate (sslcertck)."
    )
    keep: bool = Field(default=False, description="Leave fetched mail on the server.")


class Fetchmail(Group):
    interval: int = Field(
        default=300, ge=10, le=86_400, description="Seconds between polls (set daemon)."
    )
    accounts: list[Account] = Field(default_factory=list)
