"""Cost reports: what each table costs per tier (storage) and in warehouse time (compute).

``report`` and ``credits`` are pure; ``measure`` reads the warehouse, the tier storage and
Snowflake's query history; ``chart`` and ``output`` write the files; ``run`` ties them
together for ``cdc cost-report`` and the ``cdc-cost-report`` flow.
"""
