"""The snowflake engine: settings, adapter, types, errors, staging and tiering."""
