"""The service's one configuration file (``cdc.yaml``), validated by pydantic.

:func:`load_config` reads the YAML file, replaces ``${VAR}`` / ``${VAR:-default}`` references in
string values with environment variables (on the parsed values, so a secret can never break the
YAML), validates everything at once and raises :class:`ConfigError` listing every problem as
``cdc.yaml:LINE: dotted.key.path: what is wrong``.

Write ``$${`` for a literal ``${``. Secrets (``source.password`` and every entry of
``kafka.client`` / ``source.debezium`` whose key contains ``password``, ``secret`` or ``sasl``)
are held as :class:`pydantic.SecretStr` and never appear in ``repr()``, logs or error messages.

Relative paths (``warehouse.path``) resolve against the folder of the configuration file.

Modules: ``problems`` (errors), ``checks`` (value checks), one per section (``source``,
``kafka``, ``connect``, ``consumer``, ``tables`` with ``contract``, ``tiering``, ``costs``,
``metrics``; the ``warehouse`` section is :data:`warehouse.factory.WarehouseSection`),
``document`` (the whole file), ``reader`` (YAML with line numbers), ``references`` (sections
saved as Prefect blocks, through an installed loader), ``loading`` (entry points, error
messages) and ``example.yaml``.
"""

from __future__ import annotations

from cdc.config.checks import format_duration, is_secret_key
from cdc.config.connect import ConnectConfig
from cdc.config.consumer import ConsumerConfig
from cdc.config.contract import CheckConfig, LengthConfig
from cdc.config.costs import CostsConfig
from cdc.config.document import Config
from cdc.config.kafka import KafkaConfig
from cdc.config.loading import dump_example_config, load_config, parse_config
from cdc.config.metrics import MetricsConfig
from cdc.config.problems import ConfigError, Problem
from cdc.config.references import BLOCK_SECTIONS, SectionLoader, use_section_loader
from cdc.config.source import SourceConfig
from cdc.config.tables import ColumnOverrideConfig, Scd2Config, TableConfig, parse_type_override
from cdc.config.tiering import TablePolicyConfig, TieringConfig
from warehouse.factory import WarehouseSection as WarehouseConfig

__all__ = [
    "BLOCK_SECTIONS",
    "CheckConfig",
    "ColumnOverrideConfig",
    "Config",
    "ConfigError",
    "ConnectConfig",
    "ConsumerConfig",
    "CostsConfig",
    "KafkaConfig",
    "LengthConfig",
    "MetricsConfig",
    "Problem",
    "Scd2Config",
    "SectionLoader",
    "SourceConfig",
    "TableConfig",
    "TablePolicyConfig",
    "TieringConfig",
    "WarehouseConfig",
    "dump_example_config",
    "format_duration",
    "is_secret_key",
    "load_config",
    "parse_config",
    "parse_type_override",
    "use_section_loader",
]
