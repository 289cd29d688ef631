"""The snowflake engine: settings, adapter (the template's hooks), errors, types, staging,
values (reads and binds), credits (query history) and tiering; ``connection`` re-exports the
building blocks."""
