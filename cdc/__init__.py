"""CDC replication service: PostgreSQL -> Debezium -> Kafka -> warehouse."""
