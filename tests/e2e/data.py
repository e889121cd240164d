"""Test data shared by the e2e tests, the fault tests and the bench (a plain module)."""

from __future__ import annotations

from typing import Any

from tests.e2e.appliance import crypt

PASSWORDS = {"alice@example.com": "alice-secret-1", "bob@example.com": "bob-secret-2"}
ALICE = ("alice@example.com", PASSWORDS["alice@example.com"])
BOB = ("bob@example.com", PASSWORDS["bob@example.com"])
# base_settings() reads bob's password from this file in the settings directory.
BASE_FILES = {"bob.pw": PASSWORDS["bob@example.com"] + "\n"}


# postscreen as deployed (pregreet test, blocklists), but quick: a new client waits 1 s
# for the greeting. The tests after the greeting cost a reconnect; test_postscreen has them.
SCREEN: dict[str, Any] = {"greet_wait": 1, "protocol_tests": False}


def base_settings(delay: int = 3) -> dict[str, Any]:
    """alice (a hash), bob (a password file, 50 MB quota), the team alias, greylisting
    with `delay` seconds. Start it with extra_files=BASE_FILES."""
    return {
        "hostname": "mail.example.com",
        "domains": ["example.com"],
        "users": [
            {"address": ALICE[0], "password_hash": crypt(ALICE[1])},
            {"address": BOB[0], "password_file": "/config/bob.pw", "quota_mb": 50},
        ],
        "aliases": {"team@example.com": [ALICE[0], BOB[0]]},
        "greylisting": {"enabled": True, "delay": delay},
        "postscreen": dict(SCREEN),
    }
