"""The source side: Debezium connector properties derived from ``cdc.yaml`` and the Kafka
Connect REST client that registers the connector in production."""
