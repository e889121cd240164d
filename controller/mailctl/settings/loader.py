"""Load the settings: a YAML file (optional) plus MAIL_* env vars.

Reads the file, nothing else. Errors become one SettingsError whose message
names each bad setting and never repeats the value given (it may be a secret).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pydantic
import yaml

from mailctl.errors import SettingsError
from mailctl.settings.model import Settings, User

DEFAULT_DIR = Path("/config")
FILE_NAME = "settings.yaml"


def settings_path(directory: Path | None = None) -> Path:
    """The settings file inside the watched settings directory."""
    base = directory or Path(os.environ.get("MAILCTL_SETTINGS_DIR", str(DEFAULT_DIR)))
    return base / FILE_NAME


def read_file(path: Path) -> dict[str, Any]:
    """The YAML mapping in `path`; a missing file is an empty mapping (env-only setup)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"cannot read settings file {path}: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # Only where and what: the offending line may hold a password pasted by mistake.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise SettingsError(f"settings file {path} is not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"settings file {path} must hold a mapping of settings at top level")
    return data


def load_settings(path: Path | None = None) -> Settings:
    """Settings from the file at `path` with MAIL_* env vars on top (env wins)."""
    return build_settings(read_file(path or settings_path()))


def build_settings(data: Mapping[str, Any]) -> Settings:
    """Validate a settings mapping (plus the process's MAIL_* env vars)."""
    fields = set(Settings.model_fields)
    for name in sorted(os.environ):
        if name.upper().startswith("MAIL_"):
            top = name[5:].split("__", 1)[0].lower()
            if top not in fields:
                raise SettingsError(
                    f"env {name}: is not a known setting (MAIL_ + a "
                    "top-level setting, e.g. MAIL_HOSTNAME)"
                )
    try:
        return Settings(**data)
    except pydantic.ValidationError as exc:
        raise SettingsError(describe(exc)) from None
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"invalid settings: {exc}") from None


def describe(exc: pydantic.ValidationError) -> str:
    """One sentence per error, naming the setting; input values are left out."""
    lines = []
    for err in exc.errors(include_input=False, include_url=False):
        msg = err["msg"].removeprefix("Value error, ")
        if not err["loc"]:
            lines.append(msg)  # a whole-tree rule: its message names the settings
            continue
        where = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            msg = "is not a known setting"
        elif err["type"] == "missing":
            msg = "is required"
        lines.append(f"setting '{where}': {msg}")
    return "invalid settings: " + "; ".join(lines)


def with_cli_users(settings: Settings, store: Mapping[str, str]) -> Settings:
    """The settings plus the users added with `mailctl user add` (address -> crypt hash,
    "" where the mechanism checks passwords elsewhere), under the same rules.
    A user of the settings file wins over a stored one of the same address."""
    known = {u.address for u in settings.users}
    try:
        extra = [
            User(address=a, password_hash=h or None)
            for a, h in sorted(store.items())
            if a not in known
        ]
        merged = settings.model_copy(update={"users": [*settings.users, *extra]})
        merged.check_consistent()
    except pydantic.ValidationError as exc:
        raise SettingsError(
            "user store: " + describe(exc).removeprefix("invalid settings: ")
        ) from None
    except ValueError as exc:
        raise SettingsError(f"user store: {exc}") from None
    return merged
