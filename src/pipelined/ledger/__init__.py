"""The ledger: one record per source object, its life a pure state machine over any store."""
