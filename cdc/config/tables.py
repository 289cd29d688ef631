"""Section ``tables``: one entry per replicated table (name, mode, history, contract,
tiering, column types)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from cdc.config.checks import check_pg_identifier, check_warehouse_name, qualified_table
from cdc.config.contract import CheckConfig
from cdc.config.tiering import TablePolicyConfig
from cdc.model import TableId
from cdc.names import display, parse_table
from warehouse.base import Scd2Options
from warehouse.settings import SectionModel


class Scd2Config(SectionModel):
    """History options of an `scd2` table (see the README's SCD2 section)."""

    granularity: Literal["transaction", "every_change"] = Field(
        default="transaction",
        description="`transaction`: one version per committed source transaction (several "
        "changes to a key in one transaction give one version). `every_change`: one version "
        "per change event.",
    )
    track: list[str] | None = Field(
        default=None,
        description="Only changes to these columns open a new version; other columns are "
        "updated in place on the current version. Default: every column.",
    )
    valid_from: str = Field(default="valid_from", description="Column: version valid from.")
    valid_to: str = Field(
        default="valid_to", description="Column: version valid until (NULL while current)."
    )
    is_current: str = Field(default="is_current", description="Column: true on the current one.")

    @field_validator("track")
    @classmethod
    def _track(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise PydanticCustomError(
                "track_empty", "must list at least one column (leave it out to track all)"
            )
        repeated = sorted({c for c in value if value.count(c) > 1})
        if repeated:
            raise PydanticCustomError("track_repeated", "lists {columns} more than once",
                                      {"columns": ", ".join(repeated)})  # fmt: skip
        return value

    @field_validator("valid_from", "valid_to", "is_current")
    @classmethod
    def _column(cls, value: str) -> str:
        return check_pg_identifier(value)

    @model_validator(mode="after")
    def _distinct(self) -> Scd2Config:
        names = [self.valid_from, self.valid_to, self.is_current]
        if len(set(names)) != 3:
            raise PydanticCustomError(
                "validity_names", "valid_from, valid_to and is_current must be three different "
                "column names (got {names})", {"names": ", ".join(names)},
            )  # fmt: skip
        return self

    def options(self) -> Scd2Options:
        return Scd2Options(
            valid_from=self.valid_from,
            valid_to=self.valid_to,
            is_current=self.is_current,
            granularity=self.granularity,
            track=tuple(self.track) if self.track is not None else None,
        )


_OVERRIDE_RE = re.compile(r"\s*(text|decimal\s*\(\s*(\d+)\s*,\s*(\d+)\s*\))\s*", re.IGNORECASE)


def parse_type_override(value: str) -> tuple[str, int | None, int | None]:
    """``text`` or ``decimal(p,s)`` (1 <= p <= 38, 0 <= s <= p) -> (kind, precision, scale)."""
    match = _OVERRIDE_RE.fullmatch(value)
    if match is None:
        raise PydanticCustomError(
            "type_override", "must be `text` or `decimal(p,s)` with 1 <= p <= 38 and 0 <= s <= p"
        )
    if match.group(2) is None:
        return "text", None, None
    precision, scale = int(match.group(2)), int(match.group(3))
    if not 1 <= precision <= 38 or not 0 <= scale <= precision:
        raise PydanticCustomError(
            "type_override",
            f"decimal({precision},{scale}) is out of range: 1 <= p <= 38 and 0 <= s <= p",
        )
    return "decimal", precision, scale


class ColumnOverrideConfig(SectionModel):
    """How one source column is stored, when the default mapping can't hold its values."""

    type: str = Field(
        description="Warehouse type of the column: `text` (the value exactly as PostgreSQL "
        "prints it, specials such as NaN and infinity included) or `decimal(p,s)` (p <= 38). "
        "A value that doesn't fit goes to quarantine with the reason; it is never rounded."
    )

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        kind, precision, scale = parse_type_override(value)
        return "text" if kind == "text" else f"decimal({precision},{scale})"


class TableConfig(SectionModel):
    """One replicated table."""

    name: str = Field(
        description="Source table as `schema.table` (`table` alone means `public.table`). "
        "Plain parts are taken as written; any other name in PostgreSQL's quoted form, e.g. "
        '`\'"Sales Data"."Order""Items"\'` (a doubled `"` is one). Once loaded it holds the '
        "canonical form (plain parts bare, others quoted)."
    )
    schema_name: str | None = Field(
        default=None,
        alias="schema",
        description="With `table`, in place of `name`: the source schema's raw name, no "
        "quoting (default `public`).",
    )
    table: str | None = Field(
        default=None,
        description="In place of `name`: the source table's raw name, no quoting "
        "(any legal PostgreSQL name as it is stored).",
    )
    mode: Literal["mirror", "scd2"] = Field(
        default="mirror",
        description="`mirror`: the warehouse table holds the current rows (upsert/delete). "
        "`scd2`: it holds every version of every row, valid from/to the source commit times, "
        "with a `<table>_current` view.",
    )
    scd2: Scd2Config | None = Field(
        default=None, description="History options (mode `scd2` only; defaults apply if absent)."
    )
    checks: list[CheckConfig] = Field(
        default_factory=list, description="Data contract: checks every changed row must pass."
    )
    on_violation: Literal["quarantine", "dlq", "fail"] = Field(
        default="quarantine",
        description="What happens to a row that fails a check: `quarantine` (to the "
        "warehouse's _cdc.quarantine table; later changes of its key wait there too), `dlq` "
        "(to the dead-letter topic) or `fail` (stop without applying the batch).",
    )
    soft_delete: bool = Field(
        default=False,
        description="Keep deleted rows, flagged by the `<prefix>deleted` column, instead of "
        "deleting them.",
    )
    target: str | None = Field(
        default=None,
        description="Warehouse table name, any name as it is (quoted in SQL); defaults to the "
        "source table's name. Names equal ignoring case are one warehouse table.",
    )
    tiering: TablePolicyConfig | None = Field(
        default=None,
        description="Lifecycle tiering of the table's history (absent: never tiered).",
    )
    on_column_drop: Literal["keep", "null", "drop"] = Field(
        default="keep",
        description="A column dropped at the source (ALTER TABLE ... DROP COLUMN): `keep` "
        "(default: no data is lost unless asked) leaves it in the warehouse table, where "
        "later inserts get NULL and the other rows keep their last value; `cdc status` "
        "lists it. `null` sets it to NULL in the live rows (not soft-deleted; scd2: the "
        "current versions, closed ones keep their history) when the drop reaches the "
        "warehouse (YAML's bare `null` means this policy). `drop` drops it from the warehouse "
        "table (scd2: from every version).",
    )
    columns: dict[str, ColumnOverrideConfig] = Field(
        default_factory=dict,
        description="Per-column type overrides, keyed by the source column's exact name "
        "(e.g. `amount: {type: decimal(38,18)}` or `ratio: {type: text}`).",
    )

    @model_validator(mode="before")
    @classmethod
    def _schema_and_table(cls, data: Any) -> Any:
        """``schema:`` + ``table:`` (raw names) in place of ``name:``."""
        if not isinstance(data, dict) or ("schema" not in data and "table" not in data):
            return data
        if "name" in data:
            raise PydanticCustomError(
                "table_name", "give either `name` or `schema` + `table`, not both"
            )
        schema, table = data.get("schema", "public"), data.get("table")
        if not isinstance(table, str) or not isinstance(schema, str):
            raise PydanticCustomError(
                "table_name", "`table` (and `schema`, if given) must be strings: raw names"
            )
        return {**data, "name": display(TableId(schema, table))}

    @field_validator("on_column_drop", mode="before")
    @classmethod
    def _column_drop(cls, value: Any) -> Any:
        """YAML reads a bare ``null`` as no value: here it names the policy."""
        return "null" if value is None else value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return qualified_table(value, "table_name")

    @field_validator("target")
    @classmethod
    def _target(cls, value: str | None) -> str | None:
        return None if value is None else check_warehouse_name(value)

    @model_validator(mode="after")
    def _mode_options(self) -> TableConfig:
        if self.mode == "mirror" and self.scd2 is not None:
            raise PydanticCustomError(
                "scd2_options",
                "has `scd2` options but mode is mirror: set `mode: scd2` or remove `scd2`",
            )
        if self.tiering is not None and self.mode == "mirror" and not self.soft_delete:
            raise PydanticCustomError(
                "tier_no_history",
                "has `tiering` but keeps no history: a mirror table without soft_delete has "
                "nothing to move (set `mode: scd2` or `soft_delete: true`, or remove `tiering`)",
            )
        if self.mode == "scd2" and self.soft_delete:
            raise PydanticCustomError(
                "scd2_soft_delete",
                "soft_delete applies to mirror tables; an scd2 table keeps deleted keys' "
                "history anyway (a delete closes the current version): remove soft_delete",
            )
        return self

    @property
    def source(self) -> TableId:
        """The source table."""
        return parse_table(self.name)

    @property
    def target_name(self) -> str:
        """The warehouse table name (``target``, else the source table's name)."""
        return self.target or self.source.name
