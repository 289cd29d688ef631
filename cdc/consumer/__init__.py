"""The stream consumer: Kafka batches in, one warehouse transaction per batch out."""
