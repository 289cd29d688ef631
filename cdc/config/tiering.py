"""Section ``tiering`` (where tiered history goes) and each table's policy
(``tables[].tiering``)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from cdc.config.checks import ClientValue, Duration, format_duration, reveal, wrap_secrets
from warehouse.settings import SectionModel


class TablePolicyConfig(SectionModel):
    """A table's lifecycle tiering policy (``tables[].tiering``; present = the table is tiered).

    What moves: an scd2 table's closed versions by ``valid_to``; a soft-delete mirror table's
    deleted rows by deletion time (``<prefix>source_ts``, the delete's commit time)."""

    hot: Duration = Field(
        default=dt.timedelta(days=30),
        description="Rows stay in the warehouse table this long after they closed (or were "
        "deleted), then move to the warm tier.",
    )
    warm: Duration = Field(
        default=dt.timedelta(days=365),
        description="Age after which warm files move to the cold tier.",
    )
    retention: Duration = Field(
        default=dt.timedelta(days=7 * 365),
        description="Age after which cold history is deleted for good.",
    )
    target: str | None = Field(
        default=None, description="This table's tier storage; default: `tiering.target`."
    )

    @model_validator(mode="after")
    def _ordered(self) -> TablePolicyConfig:
        if self.hot <= dt.timedelta(0):
            raise PydanticCustomError("tier_policy", "hot must be longer than 0")
        if self.warm <= self.hot:
            raise PydanticCustomError(
                "tier_policy",
                "warm ({warm}) must be longer than hot ({hot}): rows leave the warehouse "
                "after `hot`, then the warm tier after `warm`",
                {"warm": format_duration(self.warm), "hot": format_duration(self.hot)},
            )
        if self.warm >= self.retention:
            raise PydanticCustomError(
                "tier_policy",
                "warm ({warm}) must be shorter than retention ({retention}): cold history is "
                "deleted after `retention`, so nothing would ever reach the cold tier",
                {
                    "warm": format_duration(self.warm),
                    "retention": format_duration(self.retention),
                },
            )
        return self


class TieringConfig(SectionModel):
    """Where tiered history goes (``tiering``); each table opts in with ``tables[].tiering``."""

    target: str = Field(
        default=".cdc/tiers",
        description="Tier storage: a local folder (relative to the configuration file's "
        "folder) or any fsspec URL, e.g. `s3://bucket/prefix`. Files are laid out as "
        "`<target>/<warm|cold>/<table>/month=YYYY-MM/<move>.parquet`.",
    )
    storage_options: dict[str, ClientValue] = Field(
        default_factory=dict,
        description="fsspec options of the target, e.g. for S3 `endpoint_url`, `key`, "
        "`secret` (use ${VAR}; values whose key contains password/secret are secret).",
    )
    cold_storage_class: str = Field(
        default="GLACIER_IR",
        description="S3 storage class set on cold objects (S3 targets only; or leave it to "
        "a bucket lifecycle rule by setting `STANDARD`).",
    )
    warm_compression_level: int = Field(
        default=3, ge=1, le=22, description="zstd level of warm Parquet files."
    )
    cold_compression_level: int = Field(
        default=19, ge=1, le=22, description="zstd level of cold Parquet files (stronger)."
    )
    snowflake_stage: str | None = Field(
        default=None,
        description="Snowflake only: an external stage you created (with a storage "
        "integration) whose URL is `target`; the `<table>_history` view reads the tier files "
        "through it with an external table. Absent: the view covers the warehouse table "
        "only, and `cdc tier` says so.",
    )

    @field_validator("storage_options")
    @classmethod
    def _option_secrets(
        cls, value: dict[str, str | int | bool | SecretStr]
    ) -> dict[str, str | int | bool | SecretStr]:
        return wrap_secrets(value)

    def options(self) -> dict[str, Any]:
        """``storage_options`` with secrets revealed (for the filesystem only)."""
        return {key: reveal(value) for key, value in self.storage_options.items()}

    def resolve(self, target: str, config_dir: Path) -> str:
        """An fsspec URL or an absolute local path for ``target``."""
        if "://" in target or Path(target).is_absolute():
            return target
        return str((config_dir / target).resolve())
