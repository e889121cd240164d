"""postfix-policyd-spf-python: the SPF check of mail from outside. Pure.

Postfix spawns it per smtpd (master.cf `policyd-spf`) and asks it at RCPT time
(the restriction token `spf`, after the relay and recipient checks). It
prepends Received-SPF; with `spf.fail: reject`, a hard fail of the envelope
sender (or of the HELO name, for a null sender) is refused with 550. DNS
trouble (temperror, permerror) never refuses or defers mail.
"""

from __future__ import annotations

from mailctl.render.bundle import HEADER, LIVE, File, text
from mailctl.settings import Settings

CONF = "policyd-spf/policyd-spf.conf"
SERVICE = "policyd-spf"  # the master.cf service, under private/
CHECK = f"check_policy_service unix:private/{SERVICE}"
USER = "policyd-spf"  # the package's own user


def master_row() -> tuple[str, ...]:
    argv = f"spawn user={USER} argv=/usr/bin/policyd-spf {LIVE}/{CONF}"
    return (SERVICE, "unix", "-", "n", "n", "-", "0", argv)


def conf(settings: Settings) -> str:
    reject = "Fail" if settings.spf.fail == "reject" else "False"
    skip = ["127.0.0.0/8", "::ffff:127.0.0.0/104", "::1", *(str(n) for n in settings.networks)]
    return HEADER + "".join(
        f"{k} = {v}\n"
        for k, v in (
            ("debugLevel", "1"),
            ("TestOnly", "1"),  # 1 is production: its answers are acted on
            ("HELO_reject", reject),
            ("Mail_From_reject", reject),
            ("PermError_reject", "False"),
            ("TempError_Defer", "False"),
            ("skip_addresses", ",".join(dict.fromkeys(skip))),
            ("Header_Type", "SPF"),
            ("Hide_Receiver", "No"),
        )
    )


def files(settings: Settings) -> dict[str, File]:
    if not settings.spf.enabled:
        return {}
    return {CONF: text(conf(settings))}
