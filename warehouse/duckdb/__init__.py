"""The duckdb engine: settings, adapter, types, errors, staging and tiering."""
