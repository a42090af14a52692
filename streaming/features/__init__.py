"""Feature logic written once: windows, definitions, and the pipeline both the consumer and backfill run."""
