"""Settings: the one model of what the user wants, and its loader."""

from mailctl.settings.loader import load_settings
from mailctl.settings.model import Settings

__all__ = ["Settings", "load_settings"]
