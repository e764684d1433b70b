"""Settings for every entry point, read from `PNEUMO_*` environment variables.

Built by entry points (CLI, flows), never at import, so importing the library has no side effects.
Nested groups use `__`: `PNEUMO_SPLIT__VAL_FRACTION=0.2`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class IngestConfig(BaseModel):
    """How raw files are read and judged while they are ingested."""

    # The largest Kermany image is ~7.3 Mpx; 40 Mpx leaves room for other scanners while still
    # refusing decompression bombs (a 100 KB PNG can claim gigapixels).
    max_pixels: int = Field(40_000_000, gt=0)
    workers: int = Field(2, ge=1, description="Threads that hash, decode and store files.")


class SplitConfig(BaseModel):
    """How train/val (and test, when the layout has none) are carved by patient."""

    val_fraction: float = Field(0.15, gt=0, lt=1)
    test_fraction: float = Field(0.15, gt=0, lt=1)
    seed: int = 42

    @model_validator(mode="after")
    def _leave_room_for_training(self) -> SplitConfig:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError("val_fraction + test_fraction must stay below 0.9")
        return self


class ValidationConfig(BaseModel):
    """Bounds for the Great Expectations suite over the manifest."""

    min_rows: int = Field(20, ge=1)
    min_side: int = Field(64, ge=1, description="Smallest accepted width or height in pixels.")
    max_side: int = Field(8192, ge=1, description="Largest accepted width or height in pixels.")
    # PNEUMONIA share per split; outside these bounds is a warning, not a failure: the real
    # dataset is 74 % PNEUMONIA and models cope with class weights.
    min_pneumonia_share: float = Field(0.2, ge=0, le=1)
    max_pneumonia_share: float = Field(0.9, ge=0, le=1)


class Settings(BaseSettings):
    """Everything an entry point needs; defaults give the embedded, serverless setup."""

    model_config = SettingsConfigDict(env_prefix="PNEUMO_", env_nested_delimiter="__")

    home: Path = Field(Path(".pneumo"), description="State directory of the embedded default.")
    ingest: IngestConfig = IngestConfig()
    split: SplitConfig = SplitConfig()
    validation: ValidationConfig = ValidationConfig()

    @property
    def store_dir(self) -> Path:
        return self.home / "store"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"
