"""The embedded development stack: PostgreSQL, a Kafka-protocol broker and Debezium, from pip."""
