"""The warehouse layer: one adapter contract (``base``), engine modules, and pure planners.

- ``base``: the :class:`~warehouse.base.Warehouse` contract, capabilities, error classes.
- ``mirror``: pure plan of a mirror batch (newest change per key, TOAST carry-forward).
- ``types``: logical column types to SQL types (sqlglot), widening rules.
- ``arrow``: logical values to Arrow (staging) and back (fetching).
- ``sql``: statement builders on sqlglot expressions, rendered per dialect.
- ``duckdb``: the embedded DuckDB engine.

The consumer imports ``warehouse.base`` only; engine modules are chosen by configuration.
"""
