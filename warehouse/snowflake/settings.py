"""How to reach one Snowflake account: the ``warehouse`` section of a Snowflake configuration
and the arguments of ``snowflake.connector.connect`` (see :mod:`warehouse.snowflake.connection`
for the query tag and why ``paramstyle`` is ``qmark``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

QUERY_TAG_MAX = 2000  # Snowflake's limit on QUERY_TAG length


class SnowflakeSettings(BaseModel):
    """How to reach one Snowflake account. Exactly one of ``password`` / ``private_key_path``.

    ``host``/``port``/``protocol`` are only for fakesnow's local server; ``session_parameters``
    are extra session parameters (the query tag is added per connection). Secrets are
    ``SecretStr``: neither ``repr`` nor ``str`` shows them. Never log :meth:`connect_kwargs`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    account: str
    user: str
    role: str | None = None
    warehouse: str | None = None
    database: str
    schema_: str = Field(alias="schema")
    password: SecretStr | None = None
    private_key_path: Path | None = None
    private_key_passphrase: SecretStr | None = None
    host: str | None = None
    port: int | None = None
    protocol: str | None = None
    network_timeout: int | None = None
    login_timeout: int | None = None
    query_tag_prefix: str = "cdc-replicator"
    session_parameters: Mapping[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_auth(self) -> SnowflakeSettings:
        if (self.password is None) == (self.private_key_path is None):
            raise ValueError(
                "Snowflake settings need exactly one of password or private_key_path "
                "(key-pair authentication)"
            )
        return self

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
            network_timeout=kwargs.get("network_timeout"),
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
            "schema": self.schema_,
            "session_parameters": params,
            "paramstyle": "qmark",
        }
        optional = {
            "role": self.role,
            "warehouse": self.warehouse,
            "host": self.host,
            "port": self.port,
            "protocol": self.protocol,
            "network_timeout": self.network_timeout,
            "login_timeout": self.login_timeout,
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
