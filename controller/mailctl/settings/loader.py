"""Load the settings: a YAML file (optional) plus MAIL_* env vars.

Reads the file, nothing else. Errors become one SettingsError whose message
names each bad setting and never repeats the value given (it may be a secret).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pydantic
import yaml

from mailctl.errors import SettingsError
from mailctl.settings.model import Address, AliasKey, Settings, User
from mailctl.settings.names import printable

DEFAULT_DIR = Path("/config")
FILE_NAME = "settings.yaml"
# A settings file is a few KiB; one this large is a mistake (or a memory attack).
MAX_FILE_BYTES = 1024 * 1024
_MERGE = "tag:yaml.org,2002:merge"


def settings_path(directory: Path | None = None) -> Path:
    """The settings file inside the watched settings directory."""
    base = directory or Path(os.environ.get("MAILCTL_SETTINGS_DIR", str(DEFAULT_DIR)))
    return base / FILE_NAME


def read_file(path: Path) -> dict[str, Any]:
    """The YAML mapping in `path`; a missing file is an empty mapping (env-only setup)."""
    shown = printable(str(path))
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
        text = raw.decode("utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"cannot read settings file {shown}: {exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise SettingsError(
            f"settings file {shown} is larger than {MAX_FILE_BYTES // 1024} KiB; "
            "it is refused unread"
        )
    try:
        data = _parse(text, shown)
    except yaml.YAMLError as exc:
        # Only where and what: the offending line may hold a password pasted by mistake.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise SettingsError(
            f"settings file {shown} is not valid YAML{where}: {printable(problem)}"
        ) from None
    except RecursionError:
        raise SettingsError(f"settings file {shown} is nested too deeply") from None
    except ValueError:
        # PyYAML's own conversions: an integer of more than 4300 digits, a date that
        # does not exist. The value itself is not repeated.
        raise SettingsError(
            f"settings file {shown} holds a value that cannot be converted "
            "(a number too long, or a date that does not exist)"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"settings file {shown} must hold a mapping of settings at top level")
    for key in data:
        if not isinstance(key, str):
            raise SettingsError(
                f"settings file {shown}: top-level key {printable(str(key))!r} is not a "
                "setting name"
            )
    return data


def _parse(text: str, shown: str) -> Any:
    """yaml.safe_load, refusing a key given twice in one mapping (YAML would keep the
    last one silently: a duplicated `users:` would drop every user above it)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _refuse_duplicate_keys(node, loader, shown)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _refuse_duplicate_keys(root: yaml.Node, loader: yaml.SafeLoader, shown: str) -> None:
    """Walk the composed document (iteratively, each node once: aliases share nodes)."""
    todo: list[tuple[yaml.Node, tuple[str, ...]]] = [(root, ())]
    visited: set[int] = set()
    while todo:
        node, where = todo.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            todo.extend((item, (*where, str(i))) for i, item in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            first: dict[Any, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE:  # `<<: *base`: later keys may override it
                    todo.append((value_node, where))
                    continue
                name = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
                todo.append((value_node, (*where, name)))
                if not isinstance(key_node, yaml.ScalarNode):
                    continue  # the constructor refuses an unhashable key itself
                key = loader.construct_object(key_node)
                line = key_node.start_mark.line + 1
                if key in first:
                    dotted = printable(".".join((*where, name)))
                    raise SettingsError(
                        f"settings file {shown}, line {line}: key '{dotted}' is given twice "
                        f"(first at line {first[key]}); YAML would silently keep the last one"
                    )
                first[key] = line


def load_settings(path: Path | None = None) -> Settings:
    """Settings from the file at `path` with MAIL_* env vars on top (env wins).

    Without the file the env vars alone must do; when they do not, the refusal says
    first that the file is missing (it was perhaps deleted or not mounted), not only
    which setting is then lacking."""
    path = path or settings_path()
    data = read_file(path)
    try:
        return build_settings(data)
    except SettingsError as exc:
        if data or path.exists():
            raise
        raise SettingsError(
            f"settings file {printable(str(path))} does not exist (not mounted, or removed), "
            f"and the MAIL_* env vars alone are not enough: {exc}"
        ) from None


# The variables Kubernetes puts into every pod for each Service of its namespace: one
# named "mail" or "mail-..." gives MAIL_PORT, MAIL_SERVICE_HOST, MAIL_PORT_25_TCP_ADDR...
# They are no settings, and must not stop the controller (enableServiceLinks is on by
# default). No setting has such a name.
_SERVICE_LINK = re.compile(
    r"MAIL_(?:[A-Z0-9_]+_)?(?:SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?"
    r"|PORT(?:_\d+_(?:TCP|UDP|SCTP)(?:_PROTO|_PORT|_ADDR)?)?)"
)


def build_settings(data: Mapping[str, Any]) -> Settings:
    """Validate a settings mapping (plus the process's MAIL_* env vars)."""
    fields = set(Settings.model_fields)
    for name in sorted(os.environ):
        if _SERVICE_LINK.fullmatch(name.upper()):
            continue
        if name.upper().startswith("MAIL_"):
            top = name[5:].split("__", 1)[0].lower()
            if top not in fields:
                raise SettingsError(
                    f"env {printable(name)}: is not a known setting (MAIL_ + a "
                    "top-level setting, e.g. MAIL_HOSTNAME)"
                )
    try:
        return Settings(**data)
    except pydantic.ValidationError as exc:
        raise SettingsError(describe(exc)) from None
    except RecursionError:
        # A MAIL_* env var of JSON nested thousands of levels deep.
        raise SettingsError("invalid settings: a value is nested too deeply") from None
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"invalid settings: {printable(str(exc))}") from None


def describe(exc: pydantic.ValidationError) -> str:
    """One sentence per error, naming the setting; input values are left out."""
    lines = []
    for err in exc.errors(include_input=False, include_url=False):
        # Keys are the user's (a map key may hold a line break): escaped, like the message.
        msg = printable(err["msg"].removeprefix("Value error, "))
        if not err["loc"]:
            lines.append(msg)  # a whole-tree rule: its message names the settings
            continue
        where = printable(".".join(str(p) for p in err["loc"]))
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
        raise SettingsError(f"user store: {printable(str(exc))}") from None
    return merged


_STORE_ALIASES: pydantic.TypeAdapter[dict[str, list[str]]] = pydantic.TypeAdapter(
    dict[AliasKey, list[Address]]
)


def with_store_aliases(settings: Settings, store: Mapping[str, list[str]]) -> Settings:
    """The settings plus the aliases added through the API or `mailctl alias add`, under
    the same rules as the file's (address forms, domains, no loops, not a user). An
    alias of the settings file wins over a stored one of the same address."""
    extra = {k: v for k, v in store.items() if k not in settings.aliases}
    if not extra:
        return settings
    try:
        checked = _STORE_ALIASES.validate_python(extra)
        merged = settings.model_copy(
            update={"aliases": {**settings.aliases, **{k: list(v) for k, v in checked.items()}}}
        )
        merged.check_consistent()
    except pydantic.ValidationError as exc:
        raise SettingsError(
            "alias store: " + describe(exc).replace("setting '", "alias '")
        ) from None
    except ValueError as exc:
        raise SettingsError(f"alias store: {printable(str(exc))}") from None
    return merged
