"""How to open the DuckDB warehouse: the ``warehouse`` section of a DuckDB configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from warehouse.settings import SectionModel, check_identifier, relative_to_config


class DuckDBSettings(SectionModel):
    """DuckDB: the embedded warehouse, one database file."""

    type: Literal["duckdb"] = Field(default="duckdb", description="Warehouse engine: `duckdb`.")
    path: Path = Field(
        default=Path("warehouse.duckdb"),
        description="Database file; a relative path resolves against the folder of the "
        "configuration file. `:memory:` keeps everything in memory (tests only).",
    )
    schema_name: str = Field(
        default="main",
        alias="schema",
        description="Schema the replicated tables are created in.",
    )
    lock_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="How long one attempt waits for the file while another process holds it "
        "(DuckDB allows one process at a time) before `cdc run` counts a retry and backs off.",
    )

    def where(self) -> str:
        return f"DuckDB file {self.path}"

    def missing_store(self) -> str | None:
        if str(self.path) == ":memory:" or self.path.exists():
            return None
        return f"warehouse file {self.path} does not exist (has `cdc run` replicated anything yet?)"

    @field_validator("path")
    @classmethod
    def _resolve_path(cls, value: Path, info: ValidationInfo) -> Path:
        if str(value) == ":memory:":
            return value
        return relative_to_config(value, info)

    @field_validator("schema_name")
    @classmethod
    def _schema(cls, value: str) -> str:
        return check_identifier(value)
