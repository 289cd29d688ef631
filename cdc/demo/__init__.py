"""``cdc demo``: a small shop replicated end to end on the embedded stack."""
