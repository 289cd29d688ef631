"""Prefect flows around the stream, one module each, thin over ``cdc`` and ``warehouse``:
``replicate`` so far (snapshot, reconcile, tier and cost reports follow)."""
