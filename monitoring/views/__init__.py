"""Where a person looks: saved reports, the Evidently UI workspace, the status table, metrics."""
