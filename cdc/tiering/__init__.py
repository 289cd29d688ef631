"""Lifecycle tiering of history: hot (the warehouse table) -> warm -> cold Parquet files -> gone.

``policy`` is the pure part (what is due, where files go), ``storage`` the files (fsspec +
pyarrow, verified by reading back), ``run`` the moves (write, verify, then one warehouse
transaction deletes the hot rows, records the files and the move, and redefines the
``<table>_history`` view, so no row is ever visible twice or not at all).
"""
