"""Section ``consumer``: how `cdc run` batches changes before applying them."""

from __future__ import annotations

from pydantic import Field, field_validator

from cdc.config.checks import check_metadata_prefix
from warehouse.base import MetadataColumns
from warehouse.settings import SectionModel


class ConsumerConfig(SectionModel):
    """How `cdc run` batches changes before applying them."""

    batch_size: int = Field(
        default=5000,
        ge=1,
        le=1_000_000,
        description="Most events applied in one warehouse transaction.",
    )
    linger_ms: int = Field(
        default=500,
        ge=0,
        le=600_000,
        description="Longest wait (ms) to fill a batch before applying what has arrived.",
    )
    metadata_prefix: str = Field(
        default="_cdc_",
        description="Prefix of the metadata columns on every replicated table "
        "(`<prefix>lsn`, `<prefix>txid`, `<prefix>op`, `<prefix>source_ts`, "
        "`<prefix>loaded_at`, `<prefix>deleted`, `<prefix>commit_lsn`, and `<prefix>row` on "
        "tables without a primary key).",
    )

    @field_validator("metadata_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return check_metadata_prefix(value)

    def metadata_columns(self) -> MetadataColumns:
        """Names of the metadata columns, built from ``metadata_prefix``."""
        p = self.metadata_prefix
        return MetadataColumns(
            lsn=f"{p}lsn",
            txid=f"{p}txid",
            op=f"{p}op",
            source_ts=f"{p}source_ts",
            loaded_at=f"{p}loaded_at",
            deleted=f"{p}deleted",
            commit_lsn=f"{p}commit_lsn",
            row=f"{p}row",
        )
