"""The live feature consumer: Kafka booking events into Feast (Redis) and the Parquet offline store."""
