"""Fixtures shared by the unit tests: no MAIL_* env var of the host leaks into a test."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _clean_mail_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The settings model reads MAIL_* env vars (and the Makefile exports MAIL_IMAGE):
    # every test starts from an environment without them.
    for name in list(os.environ):
        if name.upper().startswith(("MAIL_", "MAILCTL_")):
            monkeypatch.delenv(name)
