"""The warehouse a :class:`~cdc.config.Config` describes: its ``warehouse`` section opened by
the engine factory (:func:`warehouse.factory.open_engine`), with the tier filesystems and stage
of its ``tiering`` section. Used by every layer that reads or writes the warehouse (status,
reconciliation, costs, the runtime wiring), so it sits below them all."""

from __future__ import annotations

from typing import Any

from cdc.config import Config
from warehouse.base import Warehouse


def open_warehouse(config: Config, *, keep_open: bool = False) -> Warehouse:
    """The warehouse engine the ``warehouse`` section chooses (imported only when chosen)."""
    from warehouse.factory import open_engine

    return open_engine(
        config.warehouse,
        keep_open=keep_open,
        tier_filesystems=lambda: _tier_filesystems(config),
        # the tiering mixin reads it (history views over an external stage)
        tier_stage=config.tiering.snowflake_stage,
    )


def _tier_filesystems(config: Config) -> list[Any]:
    """fsspec filesystems of remote tier targets, for DuckDB to read ``<table>_history``."""
    remote = {
        config.tiering.resolve(t.tiering.target or config.tiering.target, config.config_dir)
        for t in config.tables
        if t.tiering is not None
    }
    remote = {r for r in remote if "://" in r and not r.startswith("file://")}
    if not remote:
        return []
    import fsspec

    out: dict[str, Any] = {}
    for root in sorted(remote):
        fs, _ = fsspec.core.url_to_fs(root, **config.tiering.options())
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        out.setdefault(protocol, fs)
    return list(out.values())
