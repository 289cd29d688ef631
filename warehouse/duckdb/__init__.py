"""The duckdb engine: settings, adapter (the template's hooks), connection, errors, tiering."""
