"""The sync engine: plan (pure diff) → guard (safety limits) → apply (units of work) → run record."""
