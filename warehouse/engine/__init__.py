"""The engine-neutral warehouse template: an engine supplies hooks, the template does the rest.

- ``core``: the hooks an engine supplies, one unit of work (errors mapped once), the DDL;
- ``apply``: the apply pipeline (key changes, quarantine holds, plans, stages, writes,
  offsets, commit) and ``load_rows``;
- ``template``: :class:`SqlWarehouse`, adding every read and bookkeeping method.

See "How to add a warehouse engine" in the README.
"""

from warehouse.engine.core import EngineCore, Field
from warehouse.engine.template import SqlWarehouse

__all__ = ["EngineCore", "Field", "SqlWarehouse"]
