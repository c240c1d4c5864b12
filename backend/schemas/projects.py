"""Project schemas: a name, its classes (id, name, colour) and the MiT variant of its models."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from model.config import MIT_VARIANTS

from .common import Color, Name

# b0..b5 in either case (the validator lower-cases); the schema says so for clients and schema-driven tools
_VARIANT_PATTERN = "^(?:" + "|".join(f"[{v[0]}{v[0].upper()}]{v[1:]}" for v in MIT_VARIANTS) + ")$"
Variant = Annotated[str, WithJsonSchema({"type": "string", "pattern": _VARIANT_PATTERN})]


class ClassSpec(BaseModel):
    """One class as clients send it; ``id`` is implied by the position (0..C-1)."""

    name: Name
    color: Color | None = None


class ClassPublic(BaseModel):
    id: int
    name: str
    color: Color


class ProjectBase(BaseModel):
    name: Name
    description: str = Field(default="", max_length=2000)


class ProjectCreate(ProjectBase):
    classes: list[ClassSpec] = Field(min_length=1, max_length=254)
    variant: Variant | None = Field(default=None, description="MiT variant b0..b5; default from settings (b0)")
    pretrained: str | None = Field(
        default=None, description="file name of a checkpoint in the server's pretrained_dir (never a path); "
        "default: settings.default_pretrained, else random initialisation")

    @field_validator("variant")
    @classmethod
    def _variant(cls, v: str | None) -> str | None:
        if v is not None and v.lower() not in MIT_VARIANTS:
            raise ValueError(f"unknown variant {v!r}; expected one of {sorted(MIT_VARIANTS)}")
        return v.lower() if v else v

    @model_validator(mode="after")
    def _unique(self) -> ProjectCreate:
        names = [c.name for c in self.classes]
        if len(set(names)) != len(names):
            raise ValueError(f"class names must be unique, got {names}")
        return self


class ProjectUpdate(BaseModel):
    """Rename, re-describe or recolour/rename classes; the number of classes is fixed by the models."""

    name: Name | None = None
    description: str | None = Field(default=None, max_length=2000)
    classes: list[ClassSpec] | None = Field(default=None, min_length=1, max_length=254)


class ProjectPublic(ProjectBase):
    model_config = ConfigDict(from_attributes=True)

    id: int
    variant: str
    classes: list[ClassPublic]
    active_version: int | None = Field(description="number of the served model version")
    image_count: int
    labeled_image_count: int
    created_at: datetime
    updated_at: datetime
