"""The service's one configuration file (``cdc.yaml``), validated by pydantic.

:func:`load_config` reads the YAML file, replaces ``${VAR}`` / ``${VAR:-default}`` references in
string values with environment variables (on the parsed values, so a secret can never break the
YAML), validates everything at once and raises :class:`ConfigError` listing every problem as
``cdc.yaml:LINE: dotted.key.path: what is wrong``.

Write ``$${`` for a literal ``${``. Secrets (``source.password`` and every entry of
``kafka.client`` / ``source.debezium`` whose key contains ``password``, ``secret`` or ``sasl``)
are held as :class:`pydantic.SecretStr` and never appear in ``repr()``, logs or error messages.

Relative paths (``warehouse.path``) resolve against the folder of the configuration file.
"""

from __future__ import annotations

import datetime as dt
import difflib
import importlib
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveInt,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_core.core_schema import ErrorType

from cdc.contracts.spec import CheckSpec, TableContract, check_name
from cdc.model import TableId
from cdc.names import BadNameError, display, parse_table, topic_name, warehouse_key
from warehouse.base import MetadataColumns, Scd2Options, TableTarget

__all__ = [
    "Config",
    "ConfigError",
    "ConnectConfig",
    "ConsumerConfig",
    "CostsConfig",
    "DuckDBWarehouseConfig",
    "KafkaConfig",
    "MetricsConfig",
    "Problem",
    "SnowflakeWarehouseConfig",
    "SourceConfig",
    "TableConfig",
    "TablePolicyConfig",
    "TieringConfig",
    "WarehouseConfig",
    "dump_example_config",
    "is_secret_key",
    "load_config",
    "parse_config",
]

_SECRET_KEY_PARTS = ("password", "secret", "sasl")


def is_secret_key(key: str) -> bool:
    """True when a setting's name marks its value as a secret (password, secret, sasl)."""
    lowered = key.lower()
    return any(part in lowered for part in _SECRET_KEY_PARTS)


# --------------------------------------------------------------------------------------------
# Errors


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a configuration file."""

    file: str
    line: int
    path: str  # dotted key path, e.g. ``tables[1].mode``; empty for the whole file
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:"
        return f"{where} {self.path}: {self.message}" if self.path else f"{where} {self.message}"


class ConfigError(Exception):
    """The configuration file is missing, unreadable or invalid.

    ``problems`` lists every problem found; ``str(error)`` has one line per problem in the form
    ``cdc.yaml:LINE: dotted.key.path: what is wrong``.
    """

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.line, p.path))
        super().__init__("\n".join(str(p) for p in self.problems))


# --------------------------------------------------------------------------------------------
# Value checks shared by the models

_PG_SLOT_RE = re.compile(r"[a-z0-9_]{1,63}")
_PG_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")
_TOPIC_RE = re.compile(r"[A-Za-z0-9._-]{1,200}")
_CONNECTOR_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,200}")


def _check_slot_name(value: str) -> str:
    if not _PG_SLOT_RE.fullmatch(value):
        raise PydanticCustomError(
            "pg_slot_name",
            "must be a valid replication slot name: 1-63 characters of a-z, 0-9 and _",
        )
    return value


def _check_pg_identifier(value: str) -> str:
    if not _PG_IDENT_RE.fullmatch(value):
        raise PydanticCustomError(
            "pg_identifier",
            "must be a plain PostgreSQL identifier: a letter or _ then letters, digits, _ or $ "
            "(at most 63 characters)",
        )
    return value


def _check_topic_part(value: str) -> str:
    if not _TOPIC_RE.fullmatch(value):
        raise PydanticCustomError(
            "kafka_topic", "must be 1-200 characters of letters, digits, '.', '_' and '-'"
        )
    return value


def _check_connector_name(value: str) -> str:
    if not _CONNECTOR_NAME_RE.fullmatch(value):
        raise PydanticCustomError(
            "connector_name", "must be 1-200 characters of letters, digits, '.', '_' and '-'"
        )
    return value


def _check_metadata_prefix(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,40}", value):
        raise PydanticCustomError(
            "metadata_prefix", "must start with a letter or _ and hold only letters, digits and _"
        )
    return value


def _check_http_url(value: str) -> str:
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
        raise PydanticCustomError("http_url", "must be an http:// or https:// URL")
    return value.rstrip("/")


def _to_property_string(value: Any) -> Any:
    """Debezium/Connect properties are strings; accept YAML numbers and booleans too."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _check_scalar_setting(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value
    if not isinstance(value, str | int | bool) or isinstance(value, float):
        raise PydanticCustomError("client_setting", "must be a string, an integer or a boolean")
    return value


PropertyValue = Annotated[str | SecretStr, BeforeValidator(_to_property_string)]
ClientValue = Annotated[str | int | bool | SecretStr, BeforeValidator(_check_scalar_setting)]


def _wrap_secrets(values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: SecretStr(str(_to_property_string(value)))
        if is_secret_key(key) and not isinstance(value, SecretStr)
        else value
        for key, value in values.items()
    }


def _reveal(value: Any) -> Any:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_by_alias=True, validate_by_name=False
    )


# --------------------------------------------------------------------------------------------
# Sections


def _qualified_table(value: str, error: str, alternative: str = "") -> str:
    """The canonical ``schema.table`` (cdc.names.display) of ``schema.table`` or ``table``
    (``public``); parts are plain identifiers or PostgreSQL's quoted form."""
    try:
        return display(parse_table(value))
    except BadNameError as exc:
        raise PydanticCustomError(error, f"{exc}{alternative}") from None


def _check_warehouse_name(value: str) -> str:
    if not value or "\x00" in value or len(value) > 200:
        raise PydanticCustomError(
            "warehouse_name", "must be 1 to 200 characters (any, but no NUL character)"
        )
    return value


class SourceConfig(_Model):
    """The PostgreSQL database to replicate and the Debezium connector that reads it."""

    host: str = Field(description="Host name or IP address of the PostgreSQL server.")
    port: int = Field(default=5432, ge=1, le=65535, description="PostgreSQL TCP port.")
    database: str = Field(description="Name of the database holding the replicated tables.")
    user: str = Field(
        description="User Debezium connects as; needs the REPLICATION attribute and SELECT "
        "on the replicated tables (and CREATE on the database to create the publication)."
    )
    password: SecretStr = Field(
        default=SecretStr(""),
        description="Password of `user`. Use `${PGPASSWORD}` to read it from the environment.",
    )
    slot_name: str = Field(
        default="cdc_slot",
        description="Logical replication slot Debezium reads (created if missing). The slot "
        "keeps WAL on the server until the connector confirms it.",
    )
    publication_name: str = Field(
        default="cdc_pub",
        description="pgoutput publication Debezium reads; created for the configured tables "
        "(`publication.autocreate.mode=filtered`).",
    )
    topic_prefix: str = Field(
        default="cdc",
        description="Debezium `topic.prefix`: changes of `schema.table` go to the Kafka topic "
        "`<topic_prefix>.<schema>.<table>`.",
    )
    snapshot_mode: Literal[
        "initial", "no_data", "never", "always", "when_needed", "initial_only"
    ] = Field(
        default="initial",
        description="Debezium `snapshot.mode`: `initial` copies existing rows once then "
        "streams; `no_data` streams only new changes; `when_needed` snapshots again if the "
        "stored offset is no longer available; `initial_only` snapshots and stops.",
    )
    heartbeat_interval_ms: int = Field(
        default=10_000,
        ge=0,
        description="Debezium heartbeat interval (0 disables). Heartbeats let the slot advance "
        "while the replicated tables are idle, so the server can recycle WAL.",
    )
    max_retained_wal_mb: int = Field(
        default=1024,
        ge=1,
        description="`cdc status` warns when the slot retains more WAL than this many MB "
        "(`pg_current_wal_lsn()` minus the slot's `restart_lsn`).",
    )
    connector_name: str = Field(
        default="cdc-postgres",
        description="Name of the connector (Kafka Connect connector name, embedded engine name).",
    )
    signal_table: str | None = Field(
        default="public.debezium_signal",
        description="Debezium signal table as `schema.table` (`signal.data.collection`): "
        "inserting an `execute-snapshot` row into it starts an incremental snapshot (`cdc "
        "snapshot --method incremental`). It is created if missing (`id varchar(42) PRIMARY "
        "KEY, type varchar(32) NOT NULL, data varchar(2048)`) before the connector starts, "
        "because it must be in the publication; Debezium adds it there itself. Its own topic "
        "is not replicated. The connector user needs INSERT on it. `null` disables signals.",
    )
    debezium: dict[str, PropertyValue] = Field(
        default_factory=dict,
        description="Extra Debezium connector properties passed through verbatim; they "
        "override the derived ones. Values whose key contains password/secret/sasl are secret.",
    )

    @field_validator("slot_name")
    @classmethod
    def _slot(cls, value: str) -> str:
        return _check_slot_name(value)

    @field_validator("publication_name")
    @classmethod
    def _publication(cls, value: str) -> str:
        return _check_pg_identifier(value)

    @field_validator("topic_prefix")
    @classmethod
    def _topic_prefix(cls, value: str) -> str:
        return _check_topic_part(value)

    @field_validator("connector_name")
    @classmethod
    def _connector_name(cls, value: str) -> str:
        return _check_connector_name(value)

    @field_validator("signal_table")
    @classmethod
    def _signal_table(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return _qualified_table(value, "signal_table", " (or null)")

    @property
    def signal_table_id(self) -> TableId | None:
        """The signal table, or None when signals are disabled."""
        if self.signal_table is None:
            return None
        return parse_table(self.signal_table)

    @field_validator("debezium")
    @classmethod
    def _debezium_secrets(cls, value: dict[str, str | SecretStr]) -> dict[str, str | SecretStr]:
        return _wrap_secrets(value)

    def debezium_extras(self) -> dict[str, str]:
        """The extra Debezium properties with secrets revealed (for the connector only)."""
        return {key: str(_reveal(value)) for key, value in self.debezium.items()}

    def conninfo(self) -> dict[str, Any]:
        """``psycopg.connect`` arguments for the source (holds the password: never log it)."""
        info: dict[str, Any] = {"host": self.host, "port": self.port, "dbname": self.database,
                                "user": self.user}  # fmt: skip
        if self.password.get_secret_value():
            info["password"] = self.password.get_secret_value()
        return info


class KafkaConfig(_Model):
    """The Kafka cluster the connector writes to and the consumer reads from."""

    bootstrap_servers: str = Field(
        min_length=1, description="Comma-separated `host:port` list of Kafka brokers."
    )
    group_id: str = Field(
        default="cdc-warehouse",
        min_length=1,
        description="Consumer group of `cdc run`; offsets are stored in the warehouse under it.",
    )
    dlq_topic_suffix: str = Field(
        default=".dlq",
        min_length=1,
        description="Dead-letter topic of a table topic: `<topic><dlq_topic_suffix>`.",
    )
    client: dict[str, ClientValue] = Field(
        default_factory=dict,
        description="Extra librdkafka settings (e.g. `security.protocol`, `sasl.username`) "
        "merged into the consumer and producer configuration. Values whose key contains "
        "password/secret/sasl are secret.",
    )

    @field_validator("client")
    @classmethod
    def _client_secrets(
        cls, value: dict[str, str | int | bool | SecretStr]
    ) -> dict[str, str | int | bool | SecretStr]:
        return _wrap_secrets(value)

    @field_validator("dlq_topic_suffix")
    @classmethod
    def _suffix(cls, value: str) -> str:
        return _check_topic_part(value)

    def client_config(self) -> dict[str, str | int | bool]:
        """librdkafka settings: ``bootstrap.servers`` plus ``client`` with secrets revealed."""
        settings: dict[str, str | int | bool] = {"bootstrap.servers": self.bootstrap_servers}
        settings.update({key: _reveal(value) for key, value in self.client.items()})
        return settings


class DuckDBWarehouseConfig(_Model):
    """DuckDB: the embedded warehouse, one database file."""

    type: Literal["duckdb"] = Field(description="Warehouse engine: `duckdb`.")
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

    @field_validator("path")
    @classmethod
    def _resolve_path(cls, value: Path, info: ValidationInfo) -> Path:
        if str(value) == ":memory:" or value.is_absolute():
            return value
        base = (info.context or {}).get("config_dir")
        return (Path(base) / value) if base is not None else value

    @field_validator("schema_name")
    @classmethod
    def _schema(cls, value: str) -> str:
        return _check_pg_identifier(value)


class SnowflakeWarehouseConfig(_Model):
    """Snowflake: the production warehouse (mirror and scd2 tables, data-contract quarantine)."""

    type: Literal["snowflake"] = Field(description="Warehouse engine: `snowflake`.")
    account: str = Field(description="Account identifier, e.g. `myorg-myaccount`.")
    user: str = Field(description="User the replicator connects as.")
    password: SecretStr | None = Field(
        default=None,
        description="Password of `user` (secret). Use `${SNOWFLAKE_PASSWORD}`. Give this or "
        "`private_key_path`.",
    )
    private_key_path: Path | None = Field(
        default=None, description="Key-pair authentication: the PKCS#8 private key file."
    )
    private_key_passphrase: SecretStr | None = Field(
        default=None, description="Passphrase of the private key file (secret)."
    )
    role: str | None = Field(default=None, description="Role to use (default: the user's).")
    warehouse: str | None = Field(
        default=None, description="Virtual warehouse that runs the statements."
    )
    database: str = Field(description="Database the replicated tables are created in.")
    schema_name: str = Field(
        default="PUBLIC", alias="schema", description="Schema the replicated tables are in."
    )
    query_tag_prefix: str = Field(
        default="cdc-replicator",
        description="`app` of the JSON QUERY_TAG on every statement (with `job` and `table`), "
        "so cost can be attributed per table.",
    )
    network_timeout_seconds: PositiveInt | None = Field(
        default=None,
        description="How long the connector retries one request over a failing network "
        "before the batch fails; the consumer then rolls it back and retries it with backoff "
        "(offsets don't move). The connector also cancels a statement running longer than this. "
        "Default: the connector's own (it keeps retrying).",
    )
    login_timeout_seconds: PositiveInt | None = Field(
        default=None,
        description="How long logging in may take, retries included (default: the "
        "connector's, 120 s).",
    )
    host: str | None = Field(
        default=None, description="Only for a local fakesnow server: its host (127.0.0.1)."
    )
    port: int | None = Field(default=None, description="Only for a local fakesnow server.")
    protocol: Literal["http", "https"] | None = Field(
        default=None, description="Only for a local fakesnow server: `http`."
    )

    @field_validator("private_key_path")
    @classmethod
    def _resolve_key_path(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None or value.is_absolute():
            return value
        base = (info.context or {}).get("config_dir")
        return (Path(base) / value) if base is not None else value

    @model_validator(mode="after")
    def _one_auth(self) -> SnowflakeWarehouseConfig:
        if (self.password is None) == (self.private_key_path is None):
            raise ValueError(
                "give exactly one of `password` and `private_key_path` (key-pair authentication)"
            )
        return self


WarehouseConfig = Annotated[
    Union[DuckDBWarehouseConfig, SnowflakeWarehouseConfig],  # noqa: UP007
    Field(discriminator="type"),
]


class ConsumerConfig(_Model):
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
        "`<prefix>loaded_at`, `<prefix>deleted`).",
    )

    @field_validator("metadata_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return _check_metadata_prefix(value)

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
        )


class Scd2Config(_Model):
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
        return _check_pg_identifier(value)

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


class LengthConfig(_Model):
    """Bounds of a string length check (either or both)."""

    min: int | None = Field(default=None, ge=0, description="Shortest allowed length.")
    max: int | None = Field(default=None, ge=0, description="Longest allowed length.")

    @model_validator(mode="after")
    def _bounds(self) -> LengthConfig:
        if self.min is None and self.max is None:
            raise PydanticCustomError("length_bounds", "give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise PydanticCustomError("length_bounds", "min is greater than max")
        return self


Bound = int | float | str


class CheckConfig(_Model):
    """One entry of a table's `checks`: checks on one column, or one custom check."""

    column: str | None = Field(default=None, description="The column the checks apply to.")
    not_null: bool = Field(default=False, description="The value must not be NULL.")
    ge: Bound | None = Field(default=None, alias=">=", description="Value >= this.")
    le: Bound | None = Field(default=None, alias="<=", description="Value <= this.")
    between: list[Bound] | None = Field(
        default=None, description="[low, high]: low <= value <= high."
    )
    allowed: list[Bound] | None = Field(default=None, description="The allowed values.")
    pattern: str | None = Field(
        default=None, description="Regular expression the text must match from its start."
    )
    length: LengthConfig | None = Field(default=None, description="Text length bounds.")
    unique: bool = Field(default=False, description="No two keys share the value within one batch.")
    custom: str | None = Field(
        default=None,
        description="`package.module.function` taking the batch as a polars DataFrame and "
        "returning a boolean Series or Expr (true = the row passes).",
    )

    @field_validator("between")
    @classmethod
    def _between(cls, value: list[Bound] | None) -> list[Bound] | None:
        if value is not None and len(value) != 2:
            raise PydanticCustomError("between", "must be [low, high]")
        return value

    @field_validator("allowed")
    @classmethod
    def _allowed(cls, value: list[Bound] | None) -> list[Bound] | None:
        if value is not None and not value:
            raise PydanticCustomError("allowed_empty", "must list at least one value")
        return value

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise PydanticCustomError(
                    "pattern", "is not a valid regular expression: {error}", {"error": str(exc)}
                ) from None
        return value

    @field_validator("custom")
    @classmethod
    def _custom(cls, value: str | None) -> str | None:
        if value is not None:
            _import_check(value)
        return value

    @model_validator(mode="after")
    def _shape(self) -> CheckConfig:
        kinds = self.kinds()
        if (self.column is None) == (self.custom is None):
            raise PydanticCustomError(
                "check_shape", "give either `column` (with its checks) or `custom`, not both"
            )
        if self.column is not None and not kinds:
            raise PydanticCustomError(
                "check_shape",
                "names a column but no check: add not_null, '>=', '<=', between, allowed, "
                "pattern, length or unique",
            )
        return self

    def kinds(self) -> list[tuple[str, Any]]:
        """(kind, value) of every check this entry declares, custom excluded."""
        out: list[tuple[str, Any]] = []
        if self.not_null:
            out.append(("not_null", None))
        for kind, value in (("ge", self.ge), ("le", self.le)):
            if value is not None:
                out.append((kind, value))
        if self.between is not None:
            out.append(("between", tuple(self.between)))
        if self.allowed is not None:
            out.append(("allowed", tuple(self.allowed)))
        if self.pattern is not None:
            out.append(("pattern", self.pattern))
        if self.length is not None:
            out.append(("length", (self.length.min, self.length.max)))
        if self.unique:
            out.append(("unique", None))
        return out


def _import_check(path: str) -> Any:
    module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise PydanticCustomError("custom_path", "must be a dotted path: package.module.function")
    try:
        function = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise PydanticCustomError(
            "custom_import", "can't import {path}: {error}", {"path": path, "error": str(exc)}
        ) from None
    if not callable(function):
        raise PydanticCustomError("custom_import", "{path} is not callable", {"path": path})
    return function


_DURATION_RE = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w|y)\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def _duration(value: Any) -> dt.timedelta:
    """``30d``, ``12h``, ``10m``, ``45s``, ``2w``, ``7y`` (365 days), or a number of seconds."""
    if isinstance(value, dt.timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.timedelta(seconds=value)
    match = _DURATION_RE.match(str(value))
    if not match:
        raise PydanticCustomError(
            "duration",
            "must be a duration like 30d, 12h, 10m, 45s, 2w or 7y (365 days)",
        )
    return dt.timedelta(seconds=int(match.group(1)) * _DURATION_UNITS[match.group(2)])


Duration = Annotated[dt.timedelta, BeforeValidator(_duration)]


def format_duration(value: dt.timedelta) -> str:
    """A duration as whole days, hours, minutes or seconds (``30d``, ``2555d``, ``10m``)."""
    seconds = int(value.total_seconds())
    for unit in ("d", "h", "m"):
        size = _DURATION_UNITS[unit]
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class TablePolicyConfig(_Model):
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


class TieringConfig(_Model):
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
        return _wrap_secrets(value)

    def options(self) -> dict[str, Any]:
        """``storage_options`` with secrets revealed (for the filesystem only)."""
        return {key: _reveal(value) for key, value in self.storage_options.items()}

    def resolve(self, target: str, config_dir: Path) -> str:
        """An fsspec URL or an absolute local path for ``target``."""
        if "://" in target or Path(target).is_absolute():
            return target
        return str((config_dir / target).resolve())


class CostsConfig(_Model):
    """Prices the cost report uses (``costs``), in your currency per unit."""

    warehouse_gb_month: float = Field(
        default=0.023,
        ge=0,
        description="Hot tier: warehouse storage per GB-month (Snowflake on-demand is about "
        "23 per TB-month; for a local DuckDB file, what your disk costs).",
    )
    standard_gb_month: float = Field(
        default=0.023, ge=0, description="Object storage, standard class, per GB-month."
    )
    infrequent_gb_month: float = Field(
        default=0.0125, ge=0, description="Object storage, infrequent-access class, per GB-month."
    )
    archive_gb_month: float = Field(
        default=0.004, ge=0, description="Object storage, archive class, per GB-month."
    )
    warm_class: Literal["standard", "infrequent", "archive"] = Field(
        default="infrequent", description="Which object storage price the warm tier pays."
    )
    cold_class: Literal["standard", "infrequent", "archive"] = Field(
        default="archive", description="Which object storage price the cold tier pays."
    )
    compute_hour: float = Field(
        default=3.0,
        ge=0,
        description="Price of one hour of measured statement time (DuckDB: your machine; "
        "Snowflake: credits per hour of the warehouse size times the credit price).",
    )
    credit_price: float = Field(
        default=3.0, ge=0, description="Snowflake: price of one credit (query-history credits)."
    )
    output: str = Field(
        default=".cdc/reports",
        description="Folder for the report's CSV, JSON and PNG chart (relative to the "
        "configuration file's folder).",
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


class ColumnOverrideConfig(_Model):
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


class TableConfig(_Model):
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

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _qualified_table(value, "table_name")

    @field_validator("target")
    @classmethod
    def _target(cls, value: str | None) -> str | None:
        return None if value is None else _check_warehouse_name(value)

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


class ConnectConfig(_Model):
    """Kafka Connect, where the Debezium connector runs in production."""

    url: str = Field(
        default="http://127.0.0.1:8083", description="Base URL of the Kafka Connect REST API."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_http_url(value)


class MetricsConfig(_Model):
    """Prometheus metrics and the health endpoint of `cdc run`."""

    port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="TCP port serving `/metrics` and `/health` (`null`: not served; 0: any "
        "free port, logged).",
    )
    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Address the endpoint binds to (`0.0.0.0` exposes it on every interface).",
    )
    slot_poll_seconds: float = Field(
        default=15.0,
        gt=0,
        le=3600,
        description="How often the replication slot's lag is read from `pg_replication_slots`.",
    )
    stall_seconds: float = Field(
        default=300.0,
        gt=0,
        le=86400,
        description="`/health` answers 503 when the loop made no progress (poll, batch, retry) "
        "for this long.",
    )


class Config(_Model):
    """The whole ``cdc.yaml``."""

    source: SourceConfig = Field(description="PostgreSQL and the Debezium connector reading it.")
    kafka: KafkaConfig = Field(description="Kafka cluster and consumer group.")
    warehouse: WarehouseConfig = Field(description="Where changes land; chosen by `type`.")
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
        line = _line_of(tuple(loc), self._lines) if self._lines else 1
        return f"{self._file}:{line}: {_dotted(tuple(loc))}"

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
                        _import_check(check.custom),
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


# --------------------------------------------------------------------------------------------
# YAML with line numbers

Loc = tuple[str | int, ...]


class _Reader:
    """Turns a YAML document into plain values, remembering the line of every key path."""

    _REF = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
    _INNER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)

    def __init__(self, text: str, file: str, env: Mapping[str, str]) -> None:
        self.file = file
        self.env = env
        self.lines: dict[Loc, int] = {(): 1}
        # values changed by interpolation: their text as written (errors show it, not the value)
        self.written: dict[Loc, str] = {}
        self.problems: list[Problem] = []
        self._loader = yaml.SafeLoader(text)

    def read(self) -> Any:
        try:
            node = self._loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else 1
            self.problems.append(Problem(self.file, line, "", f"YAML syntax error: {exc.problem}"))
            return None
        except yaml.YAMLError as exc:  # pragma: no cover - defensive
            self.problems.append(Problem(self.file, 1, "", f"YAML error: {exc}"))
            return None
        finally:
            self._loader.dispose()
        if node is None:
            return None
        return self._value(node, ())

    def _problem(self, node: yaml.Node, loc: Loc, message: str) -> None:
        self.problems.append(Problem(self.file, node.start_mark.line + 1, _dotted(loc), message))

    def _value(self, node: yaml.Node, loc: Loc) -> Any:
        if isinstance(node, yaml.MappingNode):
            try:
                self._loader.flatten_mapping(node)
            except yaml.MarkedYAMLError as exc:
                self._problem(node, loc, f"YAML error: {exc.problem}")
                return {}
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = self._scalar(key_node, loc)
                if not isinstance(key, str):
                    self._problem(key_node, loc, f"keys must be strings (got {key!r})")
                    continue
                child = (*loc, key)
                if key in result:
                    self._problem(key_node, child, "duplicate key")
                    continue
                self.lines[child] = key_node.start_mark.line + 1
                result[key] = self._value(value_node, child)
            return result
        if isinstance(node, yaml.SequenceNode):
            items: list[Any] = []
            for index, item in enumerate(node.value):
                child = (*loc, index)
                self.lines[child] = item.start_mark.line + 1
                items.append(self._value(item, child))
            return items
        value = self._scalar(node, loc)
        if isinstance(value, str):
            return self._interpolate(value, node, loc)
        return value

    def _scalar(self, node: yaml.Node, loc: Loc) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            self._problem(node, loc, "keys must be strings")
            return None
        try:
            return self._loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            self._problem(node, loc, f"YAML error: {exc.problem}")
            return None

    def _interpolate(self, value: str, node: yaml.Node, loc: Loc) -> str:
        if "$" not in value:
            return value

        def replace(match: re.Match[str]) -> str:
            text = match.group(0)
            if text == "$${":
                return "${"
            inner = match.group(1)
            if inner is None:
                self._problem(node, loc, "unclosed '${' (write '$${' for a literal '${')")
                return text
            ref = self._INNER.fullmatch(inner)
            if ref is None:
                self._problem(
                    node,
                    loc,
                    f"malformed reference '${{{inner}}}': use ${{NAME}} or ${{NAME:-default}}",
                )
                return text
            name, default = ref.group(1), ref.group(2)
            current = self.env.get(name)
            if current:
                return current
            if default is not None:
                return default
            if current is not None:  # set but empty, no default: empty is what was asked for
                return current
            self._problem(
                node,
                loc,
                f"environment variable {name} is not set "
                f"(set it, or give a default: ${{{name}:-default}})",
            )
            return text

        result = self._REF.sub(replace, value)
        if result != value:
            self.written[loc] = value
        return result


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


# --------------------------------------------------------------------------------------------
# pydantic errors -> problems


def _model_types(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation may hold (through Optional, Union, Annotated, list)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _model_types(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _model_types(arg)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _item_type(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _item_type(typing.get_args(annotation)[0])
    if origin is list:
        return typing.get_args(annotation)[0]
    return None


def _keys(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def _field(model: type[BaseModel], key: str) -> Any:
    for name, field in model.model_fields.items():
        if (field.alias or name) == key:
            return field.annotation
    return None


def _pick_model(candidates: list[type[BaseModel]], data: Any) -> type[BaseModel] | None:
    if len(candidates) == 1:
        return candidates[0]
    if isinstance(data, dict):
        for model in candidates:
            tag = model.model_fields.get("type")
            if tag is not None and data.get("type") in typing.get_args(tag.annotation):
                return model
    return None


def _allowed_keys(loc: Loc, data: Any) -> list[str]:
    """Keys the model at ``loc`` accepts (for "did you mean" suggestions)."""
    annotation: Any = Config
    node = data
    for part in loc:
        if isinstance(part, int):
            annotation = _item_type(annotation)
            node = node[part] if isinstance(node, list) and part < len(node) else None
            continue
        model = _pick_model(_model_types(annotation), node)
        if model is None:
            return []
        annotation = _field(model, part)
        node = node.get(part) if isinstance(node, dict) else None
    model = _pick_model(_model_types(annotation), node)
    return _keys(model) if model is not None else []


def _data_loc(loc: tuple[str | int, ...], data: Any) -> Loc:
    """Drop the parts pydantic adds that are not in the file (union tags)."""
    out: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str) and part not in node:
            if node.get("type") == part:  # discriminated union tag
                continue
            out.append(part)
            node = None
            continue
        if isinstance(node, list) and isinstance(part, int):
            out.append(part)
            node = node[part] if part < len(node) else None
            continue
        out.append(part)
        node = node.get(part) if isinstance(node, dict) else None
    return tuple(out)


def _line_of(loc: Loc, lines: Mapping[Loc, int]) -> int:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


def _shown(value: Any) -> str | None:
    if isinstance(value, bool | int | float | str) or value is None:
        text = repr(value)
        return text if len(text) <= 80 else text[:77] + "..."
    return None


def _message(error: Any, loc: Loc, data: Any, written: Mapping[Loc, str]) -> tuple[Loc, str]:
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else ""
        close = difflib.get_close_matches(key, _allowed_keys(loc[:-1], data), n=1, cutoff=0.6)
        return loc, "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")
    if kind == "missing":
        return loc, "required key is missing"
    if kind == "union_tag_not_found":
        return (*loc, "type"), "required key is missing"
    if kind == "union_tag_invalid":
        ctx = error.get("ctx", {})
        return (
            *loc,
            "type",
        ), f"Input should be {ctx.get('expected_tags')} (got {ctx.get('tag')!r})"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    secret = any(isinstance(part, str) and is_secret_key(part) for part in loc)
    shown = None if secret else _shown(error.get("input"))
    if shown is not None and loc in written:  # never echo a value read from the environment
        message += f" (from {written[loc]!r})"
        return loc, message
    if shown is not None and kind not in ("duplicate_table", "duplicate_target"):
        message += f" (got {shown})"
    return loc, message


def _problems(exc: ValidationError, data: Any, reader: _Reader) -> list[Problem]:
    problems = []
    for error in exc.errors(include_url=False):
        loc, message = _message(error, _data_loc(error["loc"], data), data, reader.written)
        first = (error.get("ctx") or {}).get("first")
        if error["type"] in ("duplicate_table", "duplicate_target") and isinstance(first, int):
            line = _line_of(("tables", first), reader.lines)
            message = message.replace(f"tables[{first}]", f"tables[{first}] at line {line}")
        problems.append(Problem(reader.file, _line_of(loc, reader.lines), _dotted(loc), message))
    return problems


# --------------------------------------------------------------------------------------------
# Prefect blocks in place of sections

BLOCK_SECTIONS = ("source", "kafka", "connect", "warehouse")


def _resolve_blocks(data: dict[str, Any], file: str, lines: Mapping[Loc, int]) -> list[Problem]:
    """Replace each section written as ``{block: <type>/<name>}`` by the section that Prefect
    block holds (``blocks.load_section``); a block that can't be loaded is a problem naming
    the line."""
    problems = []
    for section in BLOCK_SECTIONS:
        value = data.get(section)
        if not (isinstance(value, dict) and set(value) == {"block"}):
            continue
        ref = value["block"]
        try:
            from blocks import load_section

            data[section] = load_section(section, str(ref))
        except Exception as exc:  # Prefect raises several types for a missing block or API
            problems.append(
                Problem(
                    file,
                    _line_of((section, "block"), lines),
                    section,
                    f"block {ref!r} could not be loaded: {exc}. Check the name "
                    "(`prefect block ls`) and that PREFECT_API_URL points at your Prefect server",
                )
            )
    return problems


# --------------------------------------------------------------------------------------------
# Entry points


def parse_config(
    text: str,
    *,
    file: str = "cdc.yaml",
    config_dir: str | Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Validate configuration text; ``file`` names it in errors, ``config_dir`` anchors paths."""
    reader = _Reader(text, file, os.environ if env is None else env)
    data = reader.read()
    problems = list(reader.problems)
    if data is None and not problems:
        raise ConfigError([Problem(file, 1, "", "the file is empty")])
    if data is not None and not isinstance(data, dict):
        raise ConfigError([Problem(file, 1, "", "the file must hold a mapping of sections")])
    if data is None:
        raise ConfigError(problems)
    directory = Path(config_dir) if config_dir is not None else Path.cwd()
    unresolved = _resolve_blocks(data, file, reader.lines)
    if unresolved:
        raise ConfigError(problems + unresolved)
    try:
        config = Config.model_validate(data, context={"config_dir": directory})
    except ValidationError as exc:
        problems.extend(_problems(exc, data, reader))
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    config._config_dir = directory
    config._file = file
    config._lines = dict(reader.lines)
    return config


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a ``cdc.yaml`` file; ``env`` defaults to ``os.environ``."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [Problem(str(path), 1, "", "file not found (print an example: cdc config example)")]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(str(path), 1, "", f"cannot read the file: {exc}")]) from None
    return parse_config(text, file=str(path), config_dir=file.resolve().parent, env=env)


_EXAMPLE = """\
# cdc.yaml: configuration of the CDC replication service
# (PostgreSQL -> Debezium -> Kafka -> cdc consumer -> warehouse).
# Any string value may use ${VAR} or ${VAR:-default} to read the environment.

source:                         # PostgreSQL and the Debezium connector reading it
  host: 127.0.0.1
  port: 5432
  database: shop
  user: postgres                # needs REPLICATION and SELECT on the tables
  password: ${PGPASSWORD:-}     # secret: never logged
  slot_name: cdc_slot           # logical replication slot (a-z, 0-9, _)
  publication_name: cdc_pub     # pgoutput publication, created for the tables below
  topic_prefix: cdc             # topics are <topic_prefix>.<schema>.<table>
  snapshot_mode: initial        # initial | no_data | never | always | when_needed | initial_only
  heartbeat_interval_ms: 10000  # lets the slot advance while tables are idle (0 = off)
  max_retained_wal_mb: 1024     # `cdc status` warns when the slot retains more WAL
  connector_name: cdc-postgres
  signal_table: public.debezium_signal  # Debezium signals (incremental snapshots); null = off
  debezium: {}                  # extra Debezium connector properties (they win)

kafka:
  bootstrap_servers: 127.0.0.1:9092
  group_id: cdc-warehouse       # consumer group of `cdc run`
  dlq_topic_suffix: .dlq        # dead letters of <topic> go to <topic>.dlq
  client: {}                    # extra librdkafka settings, e.g. security.protocol: SSL

warehouse:
  type: duckdb
  path: warehouse.duckdb        # relative to this file's folder
  schema: main
  lock_timeout_seconds: 30      # wait this long for a file another process holds, then retry
# warehouse:                    # or Snowflake
#   type: snowflake
#   account: myorg-myaccount
#   user: CDC_REPLICATOR
#   password: ${SNOWFLAKE_PASSWORD}   # secret; or private_key_path: keys/cdc.p8
#   role: CDC_REPLICATOR
#   warehouse: CDC_WH
#   database: ANALYTICS
#   schema: RAW

consumer:
  batch_size: 5000              # most events per warehouse transaction
  linger_ms: 500                # longest wait to fill a batch
  metadata_prefix: _cdc_        # _cdc_lsn, _cdc_txid, _cdc_op, _cdc_source_ts, ...

tables:
  - name: public.customers      # source schema.table (table alone: public.table)
    mode: mirror                # current rows only
    soft_delete: false          # true: keep deleted rows flagged by _cdc_deleted
    # target: customers         # warehouse table name (default: the table's name)
  # - name: '"Sales Data"."Order""Items"'  # other names in PostgreSQL's quoted form ("" = ")
  # - schema: Sales Data        # or the raw names, no quoting
  #   table: Order"Items
  - name: public.products
    mode: scd2                  # every version, valid_from/valid_to from source commit times
    scd2:
      granularity: transaction  # transaction (one version per commit) | every_change
      # track: [name, price]    # only these columns open a version (default: all)
      valid_from: valid_from
      valid_to: valid_to
      is_current: is_current
    checks:                     # data contract: rows that fail go to on_violation
      - column: price
        not_null: true
        '>=': 0
      - column: name
        length: {min: 1, max: 200}
    on_violation: quarantine    # quarantine (_cdc.quarantine) | dlq | fail
    tiering:                    # move closed versions out of the warehouse table (cdc tier)
      hot: 30d                  # closed more than 30 days ago: to warm Parquet files
      warm: 365d                # warm files older than a year: to the cold tier
      retention: 7y             # cold history older than 7 years: deleted

tiering:
  target: .cdc/tiers            # local folder (relative to this file) or s3://bucket/prefix
  storage_options: {}           # fsspec options, e.g. endpoint_url, key, secret: ${AWS_SECRET}
  cold_storage_class: GLACIER_IR  # S3 storage class of cold objects

costs:                          # prices of `cdc cost-report` (per GB-month; compute per hour)
  warehouse_gb_month: 0.023
  standard_gb_month: 0.023
  infrequent_gb_month: 0.0125   # the warm tier's class (warm_class)
  archive_gb_month: 0.004       # the cold tier's class (cold_class)
  compute_hour: 3.0
  output: .cdc/reports          # CSV, JSON and PNG of each report

metrics:                        # Prometheus /metrics and /health of `cdc run`
  port: null                    # e.g. 9108; null = off (or `cdc run --metrics-port`)
  host: 127.0.0.1               # bind address
  slot_poll_seconds: 15         # how often the slot's lag is read
  stall_seconds: 300            # /health is 503 after this long without progress

# Kafka Connect REST API (production: `cdc connector register`)
# connect:
#   url: http://127.0.0.1:8083
"""


def dump_example_config() -> str:
    """A commented example ``cdc.yaml`` (printed by ``cdc config example``); it validates as is."""
    return _EXAMPLE
