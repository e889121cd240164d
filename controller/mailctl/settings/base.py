"""The base of every settings group. Pure."""

from pydantic import BaseModel, ConfigDict


class Group(BaseModel):
    """Base of every settings group: unknown keys are errors, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
