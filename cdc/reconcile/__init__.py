"""Reconciliation: compare each configured table's source rows with the warehouse (counts,
checksums over key ranges on both engines, bisection down to row diffs), aware of the stream's
lag, optionally repair, and record every run (see :mod:`cdc.reconcile.run`)."""
