"""The one place outside the engine packages that names the engines.

- :data:`WarehouseSection`: the ``warehouse`` section of ``cdc.yaml``, one settings model per
  engine (``warehouse/<engine>/settings.py``), chosen by ``type``.
- :func:`open_engine`: the engine a section describes, its package imported only when chosen.

To add an engine: give it a ``settings.py`` whose model has ``type: Literal["<engine>"]``, add
the model to :data:`WarehouseSection` and a branch to :func:`open_engine`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Field

from warehouse.duckdb.settings import DuckDBSettings
from warehouse.snowflake.settings import SnowflakeSettings

if TYPE_CHECKING:
    from warehouse.base import Warehouse

WarehouseSection = Annotated[
    Union[DuckDBSettings, SnowflakeSettings],  # noqa: UP007
    Field(discriminator="type"),
]
"""The ``warehouse`` section: the settings of the engine its ``type`` names."""


def _none() -> Sequence[Any]:
    return ()


def open_engine(
    section: DuckDBSettings | SnowflakeSettings,
    *,
    keep_open: bool = False,
    tier_filesystems: Callable[[], Sequence[Any]] = _none,
    tier_stage: str | None = None,
) -> Warehouse:
    """The warehouse engine ``section`` describes.

    ``keep_open``: hold one connection for the warehouse's life (engines with a single-writer
    file; others ignore it). ``tier_filesystems``: gives the fsspec filesystems of remote tier
    targets, called only by engines that read tier files themselves (DuckDB's history views).
    ``tier_stage``: the external stage through which engines that can't read the files
    themselves (Snowflake) see them (``tiering.snowflake_stage``).
    """
    if isinstance(section, DuckDBSettings):
        from warehouse.duckdb.adapter import DuckDBWarehouse

        return DuckDBWarehouse(
            section.path,
            schema=section.schema_name,
            keep_open=keep_open,
            lock_timeout_s=section.lock_timeout_seconds,
            tier_filesystems=tier_filesystems(),
        )
    if isinstance(section, SnowflakeSettings):
        from warehouse.snowflake.adapter import SnowflakeWarehouse

        return SnowflakeWarehouse(section, tier_stage=tier_stage)
    raise TypeError(f"no warehouse engine for {type(section).__name__}")  # pragma: no cover
