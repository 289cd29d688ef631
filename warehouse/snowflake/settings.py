"""How to reach one Snowflake account: the ``warehouse`` section of a Snowflake configuration
and the arguments of ``snowflake.connector.connect`` (see :mod:`warehouse.snowflake`
for the query tag and why ``paramstyle`` is ``qmark``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    PositiveInt,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from warehouse.settings import SectionModel, relative_to_config

QUERY_TAG_MAX = 2000  # Snowflake's limit on QUERY_TAG length

# The same rule, worded for where it is broken: a cdc.yaml section (validated with a context
# naming the file's folder) or settings built in code.
_ONE_AUTH_IN_FILE = (
    "give exactly one of `password` and `private_key_path` (key-pair authentication)"
)
_ONE_AUTH_IN_CODE = (
    "Snowflake settings need exactly one of password or private_key_path (key-pair authentication)"
)


class SnowflakeSettings(SectionModel):
    """Snowflake: the production warehouse (mirror and scd2 tables, data-contract quarantine).

    Exactly one of ``password`` / ``private_key_path``. ``host``/``port``/``protocol`` are only
    for fakesnow's local server. Secrets are ``SecretStr``: neither ``repr`` nor ``str`` shows
    them. Never log :meth:`connect_kwargs`.

    ``session_parameters`` (extra session parameters of every connection; the query tag is
    added per connection) are given in code only, e.g. by :meth:`from_fakesnow`: they are not
    a key of ``cdc.yaml`` (refused there as unknown) and never dumped.
    """

    type: Literal["snowflake"] = Field(
        default="snowflake", description="Warehouse engine: `snowflake`."
    )
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

    session_parameters: SkipJsonSchema[Mapping[str, Any]] = Field(
        default_factory=dict,
        exclude=True,
        description="Extra session parameters of every connection; given in code only.",
    )

    @field_validator("private_key_path")
    @classmethod
    def _resolve_key_path(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else relative_to_config(value, info)

    @field_validator("session_parameters")
    @classmethod
    def _not_from_a_file(cls, value: Mapping[str, Any], info: ValidationInfo) -> Mapping[str, Any]:
        if info.context is not None:  # not a key of cdc.yaml: refused as any unknown key is
            raise PydanticCustomError("extra_forbidden", "Extra inputs are not permitted")
        return value

    @model_validator(mode="after")
    def _one_auth(self, info: ValidationInfo) -> SnowflakeSettings:
        if (self.password is None) == (self.private_key_path is None):
            raise ValueError(_ONE_AUTH_IN_FILE if info.context is not None else _ONE_AUTH_IN_CODE)
        return self

    @property
    def schema_(self) -> str:
        """The schema (``schema_name``), under the name the adapter reads."""
        return self.schema_name

    @classmethod
    def from_fakesnow(
        cls, kwargs: Mapping[str, Any], *, database: str, schema: str, **extra: Any
    ) -> SnowflakeSettings:
        """Settings for the kwargs ``fakesnow.server()`` yields (its session parameters kept)."""
        return cls(
            account=kwargs["account"],
            user=kwargs["user"],
            password=SecretStr(kwargs["password"]),
            host=kwargs.get("host"),
            port=kwargs.get("port"),
            protocol=kwargs.get("protocol"),
            network_timeout_seconds=kwargs.get("network_timeout"),
            session_parameters=dict(kwargs.get("session_parameters") or {}),
            database=database,
            schema=schema,
            **extra,
        )

    def query_tag(self, job: str, table: str | None) -> str:
        """The ``QUERY_TAG`` of a connection: JSON naming the app, the job and the table."""
        tag = json.dumps({"app": self.query_tag_prefix, "job": job, "table": table})
        if len(tag) > QUERY_TAG_MAX:
            raise ValueError(
                f"query tag is {len(tag)} characters, Snowflake allows {QUERY_TAG_MAX}; "
                "shorten query_tag_prefix or the table name"
            )
        return tag

    def where(self) -> str:
        at = f" at {self.host}:{self.port}" if self.host is not None else ""
        return f"Snowflake account {self.account}{at}, database {self.database}"

    def connect_kwargs(
        self, job: str, table: str | None, session_parameters: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Arguments of ``snowflake.connector.connect`` for one job (apply, snapshot...).

        Session parameters are merged: the settings' own, then ``session_parameters``, then
        the query tag. The result holds the secret: pass it to the connector, never log it.
        """
        params: dict[str, Any] = {
            **self.session_parameters,
            **(session_parameters or {}),
            "QUERY_TAG": self.query_tag(job, table),
        }
        kwargs: dict[str, Any] = {
            "account": self.account,
            "user": self.user,
            "database": self.database,
            "schema": self.schema_name,
            "session_parameters": params,
            "paramstyle": "qmark",
        }
        optional = {
            "role": self.role,
            "warehouse": self.warehouse,
            "host": self.host,
            "port": self.port,
            "protocol": self.protocol,
            "network_timeout": self.network_timeout_seconds,
            "login_timeout": self.login_timeout_seconds,
        }
        kwargs.update({k: v for k, v in optional.items() if v is not None})
        if self.password is not None:
            kwargs["password"] = self.password.get_secret_value()
        else:
            kwargs["authenticator"] = "SNOWFLAKE_JWT"
            kwargs["private_key_file"] = str(self.private_key_path)
            if self.private_key_passphrase is not None:
                kwargs["private_key_file_pwd"] = self.private_key_passphrase.get_secret_value()
        return kwargs
