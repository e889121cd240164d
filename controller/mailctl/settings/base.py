"""The base of every settings group, and field types shared by the groups. Pure."""

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

from mailctl.settings import names

# Every path setting: refused at the settings edge if opening it could only fail.
FilePath = Annotated[Path, AfterValidator(names.file_path)]


class Group(BaseModel):
    """Base of every settings group: unknown keys are errors, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
