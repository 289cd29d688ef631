"""Tier files on any fsspec filesystem (a local folder by default, S3 and compatibles).

Every file is verified after it is written: read back, its row count and checksum must equal
those of the rows that were meant to go in, before the warehouse lets go of anything.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import duckdb
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from cdc.names import path_segment
from cdc.tiering.policy import Tier, TierFile


class TierStorageError(Exception):
    """The tier storage can't be reached or a file doesn't read back as written."""


_HASHER_LOCK = threading.Lock()
_hasher: duckdb.DuckDBPyConnection | None = None  # an in-memory DuckDB (a connect is ~35 ms)


def checksum(table: pa.Table) -> str:
    """An order-independent checksum of the rows: the sum of DuckDB's hash of every row's
    columns (``hash(c1, c2, ...)``), NULLs included."""
    global _hasher
    if table.num_columns == 0:
        return "0"
    columns = ", ".join('"' + name.replace('"', '""') + '"' for name in table.column_names)
    with _HASHER_LOCK:
        if _hasher is None:
            _hasher = duckdb.connect()
        _hasher.register("rows_", table)
        try:
            query = f"SELECT coalesce(sum(hash({columns})::HUGEINT), 0)::VARCHAR FROM rows_"
            result = _hasher.execute(query).fetchall()[0]
        finally:
            _hasher.unregister("rows_")
    return str(result[0])


class TierStore:
    """The files of the tiered tables under one root (folder or URL)."""

    def __init__(
        self,
        root: str,
        options: Mapping[str, Any] | None = None,
        *,
        cold_storage_class: str = "GLACIER_IR",
        levels: Mapping[Tier, int] | None = None,
    ) -> None:
        self.root = root.rstrip("/")
        try:
            fs, _ = fsspec.core.url_to_fs(self.root, **dict(options or {}))
        except (ImportError, ValueError, TypeError) as exc:
            raise TierStorageError(f"tier storage {self.root}: {exc}") from exc
        self.fs: Any = fs
        self.protocol = self.root.split("://", 1)[0] if "://" in self.root else "file"
        self.cold_storage_class = cold_storage_class
        self.levels: dict[Tier, int] = {"warm": 3, "cold": 19, **(levels or {})}

    def check_reachable(self) -> None:
        """Write, read and delete a probe file under the root: a precise error before
        anything moves (an object store has no folders to list)."""
        probe = f"{self.root}/.cdc-probe"
        try:
            with contextlib.suppress(FileExistsError):
                self.fs.makedirs(self.root, exist_ok=True)
            self.fs.pipe_file(probe, b"cdc")
            if self.fs.cat_file(probe) != b"cdc":
                raise TierStorageError(f"{probe} did not read back as written")
            self.fs.rm(probe)
        except TierStorageError:
            raise
        except Exception as exc:  # fsspec backends raise their own classes
            raise TierStorageError(
                f"tier storage {self.root} is not reachable ({type(exc).__name__}: {exc}); "
                "check `tiering.target` and `tiering.storage_options`"
            ) from exc

    def write(self, table: pa.Table, path: str, tier: Tier) -> int:
        """Write ``table`` as one zstd Parquet file; returns its size in bytes."""
        extra: dict[str, Any] = {}
        if tier == "cold" and self.protocol in ("s3", "s3a") and self.cold_storage_class:
            extra["StorageClass"] = self.cold_storage_class
        parent = path.rsplit("/", 1)[0]
        with contextlib.suppress(FileExistsError):
            self.fs.makedirs(parent, exist_ok=True)
        with self.fs.open(path, "wb", **extra) as f:
            pq.write_table(table, f, compression="zstd", compression_level=self.levels[tier])
        return int(self.fs.size(path))

    def read(self, paths: Sequence[str]) -> pa.Table:
        tables = []
        for path in paths:
            with self.fs.open(path, "rb") as f:
                tables.append(pq.read_table(f))
        return pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({})

    def verify(self, path: str, rows: int, expected: str) -> None:
        """Read the file back: its rows and checksum must be what was written."""
        back = self.read([path])
        found = checksum(back)
        if back.num_rows != rows or found != expected:
            raise TierStorageError(
                f"{path} does not read back as written: {back.num_rows} rows (expected "
                f"{rows}), checksum {found} (expected {expected}); nothing was moved"
            )

    def put(self, table: pa.Table, path: str, tier: Tier, *, name: str, month: str,
            move: str) -> TierFile:  # fmt: skip
        """Write, verify, and describe one file."""
        expected = checksum(table)
        size = self.write(table, path, tier)
        self.verify(path, table.num_rows, expected)
        return TierFile(name, tier, month, path, table.num_rows, expected, size, move)

    def files_under(self, table: str) -> Iterator[str]:
        """Every Parquet file of a table in either tier (live or not)."""
        for tier in ("warm", "cold"):
            base = f"{self.root}/{tier}/{path_segment(table)}"
            try:
                found = self.fs.find(base)
            except FileNotFoundError:
                continue
            for path in found:
                if str(path).endswith(".parquet"):
                    yield self._full(str(path))

    def _full(self, path: str) -> str:
        """fsspec lists paths without the protocol; tier_files keeps full URLs."""
        if self.protocol == "file" or "://" in path:
            return path
        return f"{self.protocol}://{path}"

    def delete(self, paths: Sequence[str]) -> None:
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(path)

    def storage_class(self, path: str) -> str | None:
        """The object's storage class (S3), None elsewhere."""
        if self.protocol not in ("s3", "s3a"):
            return None
        info = self.fs.info(path)
        return str(info.get("StorageClass") or info.get("storage_class") or "STANDARD")
