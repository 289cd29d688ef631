"""The whole ``cdc.yaml``: :class:`Config`, its sections, and what is checked across them."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

from pydantic import (
    Field,
    PrivateAttr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_core.core_schema import ErrorType

from cdc.config.checks import import_check
from cdc.config.connect import ConnectConfig
from cdc.config.consumer import ConsumerConfig
from cdc.config.costs import CostsConfig
from cdc.config.kafka import KafkaConfig
from cdc.config.metrics import MetricsConfig
from cdc.config.problems import Loc, dotted, line_of
from cdc.config.source import SourceConfig
from cdc.config.tables import Scd2Config, TableConfig
from cdc.config.tiering import TieringConfig
from cdc.contracts.spec import CheckSpec, TableContract, check_name
from cdc.model import TableId
from cdc.names import BadNameError, display, parse_table, topic_name, warehouse_key
from warehouse.base import TableTarget
from warehouse.factory import WarehouseSection
from warehouse.settings import SectionModel


class Config(SectionModel):
    """The whole ``cdc.yaml``."""

    source: SourceConfig = Field(description="PostgreSQL and the Debezium connector reading it.")
    kafka: KafkaConfig = Field(description="Kafka cluster and consumer group.")
    warehouse: WarehouseSection = Field(description="Where changes land; chosen by `type`.")
    consumer: ConsumerConfig = Field(
        default_factory=ConsumerConfig, description="Batching of `cdc run`."
    )
    tables: list[TableConfig] = Field(
        min_length=1, description="The replicated tables (at least one; names unique)."
    )
    connect: ConnectConfig | None = Field(
        default=None, description="Kafka Connect REST API (production deployments)."
    )
    tiering: TieringConfig = Field(
        default_factory=TieringConfig, description="Tier storage of the tiered tables' history."
    )
    costs: CostsConfig = Field(
        default_factory=CostsConfig, description="Prices of the cost report."
    )
    metrics: MetricsConfig = Field(
        default_factory=MetricsConfig, description="Prometheus metrics of `cdc run`."
    )

    state_dir: str = Field(
        default=".cdc",
        min_length=1,
        description="Folder of the replicator's own files (relative to the configuration "
        "file's folder): the plans of bulk snapshots, so an interrupted one resumes "
        "(`<state_dir>/snapshots`). It must be writable; point it at a volume when the "
        "configuration is mounted read-only.",
    )

    _config_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _file: str = PrivateAttr(default="cdc.yaml")
    _lines: dict[Loc, int] = PrivateAttr(default_factory=dict)

    @field_validator("tables", mode="wrap")
    @classmethod
    def _unique_tables(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # Wrap, not after: duplicates are reported even when another table entry is invalid.
        try:
            tables = handler(value)
        except ValidationError as exc:
            duplicates = _duplicate_tables(value)
            if not duplicates:
                raise
            raise ValidationError.from_exception_data(
                "tables", [*_error_details(exc), *duplicates]
            ) from None
        duplicates = _duplicate_tables(tables)
        if duplicates:
            raise ValidationError.from_exception_data("tables", duplicates)
        return tables

    @property
    def config_dir(self) -> Path:
        """Folder of the configuration file (relative paths resolve against it)."""
        return self._config_dir

    def state_path(self, *parts: str) -> Path:
        """A path under :attr:`state_dir` (resolved against the configuration's folder)."""
        return self.config_dir.joinpath(self.state_dir, *parts)

    def table(self, source_name: str | TableId) -> TableConfig:
        """The configured table ``schema.table`` (or ``table`` in ``public``; PostgreSQL's
        quoted form for other names, see cdc.names), or a TableId."""
        if isinstance(source_name, TableId):
            wanted = source_name
        else:
            try:
                wanted = parse_table(source_name)
            except BadNameError as exc:
                raise KeyError(f"table {source_name!r}: {exc}") from None
        for table in self.tables:
            if table.source == wanted:
                return table
        known = ", ".join(t.name for t in self.tables)
        raise KeyError(f"table {display(wanted)!r} is not configured (configured: {known})")

    def topic_for(self, table: TableConfig) -> str:
        """Kafka topic Debezium writes the table's changes to: ``<prefix>.<schema>.<table>``,
        sanitised as Debezium does (characters other than ``[A-Za-z0-9._-]`` become ``_``, so
        two tables may share a topic: the consumer reads the table from each envelope)."""
        return topic_name(self.source.topic_prefix, table.source)

    def where(self, *loc: str | int) -> str:
        """``file:line: key.path`` of a key path (for errors found after loading)."""
        line = line_of(tuple(loc), self._lines) if self._lines else 1
        return f"{self._file}:{line}: {dotted(tuple(loc))}"

    def contract_for(self, table: TableConfig) -> TableContract | None:
        """The table's data contract, or None when it declares no checks."""
        if not table.checks:
            return None
        i = self.tables.index(table)
        specs: list[CheckSpec] = []
        for j, check in enumerate(table.checks):
            where = self.where("tables", i, "checks", j)
            if check.custom is not None:
                specs.append(
                    CheckSpec(
                        check_name("custom", None, check.custom),
                        "custom",
                        None,
                        import_check(check.custom),
                        where,
                    )
                )
                continue
            for kind, value in check.kinds():
                name = check_name(kind, check.column, value)
                specs.append(CheckSpec(name, kind, check.column, value, where))  # type: ignore[arg-type]
        unique: dict[str, CheckSpec] = {s.name: s for s in specs}  # a check declared twice
        return TableContract(table.target_name, tuple(unique.values()), table.on_violation)

    def dlq_topic_for(self, table: TableConfig) -> str:
        """Dead-letter topic of a table: its topic plus ``kafka.dlq_topic_suffix``."""
        return f"{self.topic_for(table)}{self.kafka.dlq_topic_suffix}"

    def table_target(self, table: TableConfig) -> TableTarget:
        """The warehouse-side description of a table (name, mode, metadata column names)."""
        return TableTarget(
            name=table.target_name,
            mode=table.mode,
            soft_delete=table.soft_delete,
            metadata=self.consumer.metadata_columns(),
            scd2=(table.scd2 or Scd2Config()).options(),
            quarantine=bool(table.checks) and table.on_violation == "quarantine",
            tiered=table.tiering is not None,
            on_column_drop=table.on_column_drop,
        )


_BUILTIN_ERROR_TYPES: frozenset[str] = frozenset(typing.get_args(ErrorType))


def _error_details(exc: ValidationError) -> list[InitErrorDetails]:
    """A validation error's errors in the form needed to raise them again with others."""
    details: list[InitErrorDetails] = []
    for error in exc.errors(include_url=False):
        kind = error["type"]
        detail = InitErrorDetails(
            type=kind if kind in _BUILTIN_ERROR_TYPES else PydanticCustomError(kind, error["msg"]),
            loc=error["loc"],
            input=error["input"],
        )
        if kind in _BUILTIN_ERROR_TYPES and "ctx" in error:
            detail["ctx"] = error["ctx"]
        details.append(detail)
    return details


def _raw_table(table: dict[str, Any]) -> tuple[str, str, bool] | None:
    """(canonical name, warehouse name, target given) of a table entry not yet validated."""
    try:
        if isinstance(table.get("name"), str):
            source = parse_table(table["name"])
        elif isinstance(table.get("table"), str) and isinstance(table.get("schema", ""), str):
            source = TableId(table.get("schema", "public"), table["table"])
        else:
            return None
    except BadNameError:
        return None
    explicit = isinstance(table.get("target"), str)
    return display(source), table["target"] if explicit else source.name, explicit


def _duplicate_tables(tables: Any) -> list[InitErrorDetails]:
    """Errors for entries repeating an earlier table name or warehouse target (warehouse
    names equal ignoring case are one name: cdc.names.warehouse_key)."""
    if not isinstance(tables, list):
        return []
    errors: list[InitErrorDetails] = []
    seen_names: dict[str, int] = {}
    seen_targets: dict[str, int] = {}
    for index, table in enumerate(tables):
        if isinstance(table, TableConfig):
            name, target, explicit = table.name, table.target_name, table.target is not None
        elif isinstance(table, dict) and (raw := _raw_table(table)) is not None:
            name, target, explicit = raw
        else:
            continue
        first = seen_names.setdefault(name, index)
        if first != index:
            errors.append(
                InitErrorDetails(
                    type=PydanticCustomError(
                        "duplicate_table",
                        "duplicate table '{name}' (already tables[{first}])",
                        {"name": name, "first": first},
                    ),
                    loc=(index, "name"),
                    input=name,
                )
            )
            continue
        first = seen_targets.setdefault(warehouse_key(target), index)
        if first != index:
            errors.append(
                InitErrorDetails(
                    type=PydanticCustomError(
                        "duplicate_target",
                        "warehouse table '{target}' is already the target of tables[{first}]",
                        {"target": target, "first": first},
                    ),
                    loc=(index, "target" if explicit else "name"),
                    input=target,
                )
            )
    return errors
