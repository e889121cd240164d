"""The one root exception and its small family. No side effects."""


class MailctlError(Exception):
    """Root of every error the controller raises on purpose."""


class SettingsError(MailctlError):
    """The settings are invalid; the message names the setting."""


class RenderError(MailctlError):
    """A value cannot be written safely into a daemon's config file."""


class CommandError(MailctlError):
    """A command failed; carries argv, exit code and output (never secrets)."""

    def __init__(self, argv: list[str], returncode: int | None, output: str) -> None:
        self.argv = argv
        self.returncode = returncode
        self.output = output
        status = "timed out" if returncode is None else f"exited with status {returncode}"
        super().__init__(f"{argv[0]} {status}: {output.strip()[:2000]}")


class ValidationError(MailctlError):
    """A daemon's own checker refused the staged configuration."""


class ApplyError(MailctlError):
    """A revision could not go live; the live config was left as it was."""


class NotFound(MailctlError):
    """What an operation names does not exist (a user, alias, queue ID, table)."""


class Conflict(MailctlError):
    """An operation clashes with what exists (a user already there, one of the file's)."""
