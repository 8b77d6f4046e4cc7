"""Google Cloud implementations of the ports; so far the Firestore ledger and GCS's events."""
