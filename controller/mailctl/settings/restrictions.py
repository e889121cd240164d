"""SMTP restriction lists (FEATURES P9, P10): validated tokens, never free text.

Pure. The relay guard is not here and cannot be set: it is fixed in
smtpd_relay_restrictions, which Postfix evaluates before the recipient
restrictions, so no list written here can open a relay.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from mailctl.settings import names
from mailctl.settings.base import Group
from mailctl.settings.maps import ClientKey

SIMPLE = frozenset(
    """
permit reject defer dunno warn_if_reject
permit_mynetworks permit_sasl_authenticated permit_auth_destination permit_tls_clientcerts
reject_unauth_destination defer_unauth_destination reject_unauth_pipelining
reject_non_fqdn_helo_hostname reject_invalid_helo_hostname reject_unknown_helo_hostname
reject_non_fqdn_sender reject_non_fqdn_recipient reject_unknown_sender_domain
reject_unknown_recipient_domain reject_unknown_client_hostname
reject_unknown_reverse_client_hostname reject_unlisted_recipient reject_unlisted_sender
reject_unverified_sender reject_unverified_recipient reject_sender_login_mismatch
reject_authenticated_sender_login_mismatch reject_unauthenticated_sender_login_mismatch
reject_multi_recipient_bounce
check_client_access check_helo_access check_sender_access check_recipient_access
check_sender_mx_access greylist rbl spf
""".split()
)
# Tokens that take a DNS list domain as their argument.
WITH_DOMAIN = frozenset(
    {
        "reject_rbl_client",
        "reject_rhsbl_sender",
        "reject_rhsbl_client",
        "reject_rhsbl_helo",
        "reject_rhsbl_recipient",
        "permit_dnswl_client",
    }
)
_CLASS = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def token(value: str) -> str:
    """One restriction: a known name, `reject_rbl_client DOMAIN`, or a class name."""
    parts = value.split()
    if len(parts) == 2 and parts[0] in WITH_DOMAIN:
        return f"{parts[0]} {names.domain(parts[1])}"
    if len(parts) == 1 and (parts[0] in SIMPLE or _CLASS.fullmatch(parts[0])):
        return parts[0]
    raise ValueError(
        f"{value!r} is not a restriction this appliance knows (e.g. permit_mynetworks, "
        "reject_non_fqdn_sender, check_sender_access, reject_rbl_client zen.spamhaus.org)"
    )


def class_name(value: str) -> str:
    if not _CLASS.fullmatch(value) or value in SIMPLE:
        raise ValueError(
            f"{value!r} cannot name a restriction class (a-z, 0-9, _; not a restriction name)"
        )
    return value


Token = Annotated[str, AfterValidator(token)]


class Rbl(Group):
    """DNS blocklists (FEATURES P10)."""

    lists: list[Annotated[str, AfterValidator(names.domain)]] = Field(
        default_factory=list, description="DNSBL zones, e.g. zen.spamhaus.org, bl.blocklist.de."
    )
    whitelist: list[ClientKey] = Field(
        default_factory=list, description="Clients (IPs, networks, names) never checked."
    )


class Restrictions(Group):
    """Restriction lists per SMTP stage; unset stages keep the appliance's defaults."""

    preset: Literal["basic", "internet"] = Field(
        default="basic",
        description="basic: access maps and greylisting; internet: the guide's 'Mailserver im "
        "INet' lists (FQDN checks, unknown domains, HELO checks, blocklists).",
    )
    client: list[Token] | None = Field(default=None, description="smtpd_client_restrictions.")
    helo: list[Token] | None = Field(default=None, description="smtpd_helo_restrictions.")
    sender: list[Token] | None = Field(default=None, description="smtpd_sender_restrictions.")
    recipient: list[Token] | None = Field(
        default=None, description="smtpd_recipient_restrictions (relaying is guarded apart)."
    )
    data: list[Token] | None = Field(
        default=None, description="smtpd_data_restrictions; reject_unauth_pipelining stays first."
    )
    classes: dict[Annotated[str, AfterValidator(class_name)], list[Token]] = Field(
        default_factory=dict,
        description="smtpd_restriction_classes: name -> list, usable as an access-map action "
        "or a token.",
    )

    @model_validator(mode="after")
    def _classes_known(self) -> Restrictions:
        for stage in ("client", "helo", "sender", "recipient", "data"):
            for item in getattr(self, stage) or []:
                if item not in SIMPLE and " " not in item and item not in self.classes:
                    raise ValueError(
                        f"restrictions.{stage}: {item!r} is neither a known "
                        "restriction nor a class in restrictions.classes"
                    )
        return self
