"""The reference settings (config/settings.reference.yaml) stay valid and complete."""

from __future__ import annotations

from pathlib import Path

from mailctl.render import render
from mailctl.render.secrets import Secrets
from mailctl.settings.loader import load_settings
from mailctl.settings.model import Settings

REFERENCE = Path(__file__).resolve().parents[2] / "config" / "settings.reference.yaml"


def test_reference_settings_validate_and_render() -> None:
    settings = load_settings(REFERENCE)
    hashes = {u.address: u.password_hash or "$6$x$y" for u in settings.users}
    relay = {"[smtp.provider.example]:587": "pw", "@example.org": "pw2"}
    bundle = render(
        settings, Secrets(user_hashes=hashes, relay_passwords=relay, fetchmail_passwords={0: "pw3"})
    )
    assert "postfix/relay_passwords" in bundle.files


def test_reference_sets_every_group() -> None:
    text = REFERENCE.read_text()
    for name in Settings.model_fields:
        assert f"\n{name}:" in text, f"{name} is missing from the reference"
