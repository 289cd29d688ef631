"""Validate a table's batch against its contract with pandera, as one polars frame.

The frame has one row per inserted, updated or snapshot-read event of the batch (deletes carry
no row to check) and only the columns the checks need, built column by column through the same
Arrow staging as the warehouse, then handed to polars without a copy. pandera runs every check
over the whole frame (``lazy=True``); its failure cases name the row and the check. The pandera
schema is built once per table schema version and cached.

Values a change did not send (unchanged TOAST) are unknown here: checks on them pass (the value
was checked when it was written).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandera.polars as pa
import polars as pl
import pyarrow

from cdc.contracts.spec import CheckSpec, TableContract
from cdc.model import UNCHANGED_TOAST, ChangeEvent, ColumnType, Kind, Op, TableSchema
from warehouse.arrow import arrow_type, column_array
from warehouse.base import DataError, TableBatch

KEY, LAST = "__cdc_key", "__cdc_last"  # helper columns of the frame (uniqueness checks)
_NOT_NULL = "not_nullable"  # pandera's name for a failed nullable=False
_UNSUPPORTED = (Kind.INTERVAL,)  # no polars type for Arrow's month_day_nano_interval


class ContractError(Exception):
    """The contract can't be applied to the table as it is (unknown column, a check that
    doesn't fit the column's type): a configuration error, naming the file line."""


@dataclass(frozen=True, slots=True)
class Violation:
    """One event that failed checks: its index in ``batch.events`` and the checks' names."""

    index: int
    checks: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Compiled:
    schema: pa.DataFrameSchema
    columns: tuple[str, ...]  # data columns of the frame
    column_checks: dict[str, tuple[CheckSpec, ...]]  # pandera check_number -> spec, per column
    not_null: dict[str, CheckSpec]
    frame_checks: tuple[CheckSpec, ...]  # dataframe-level checks (unique, custom), in order
    needs_key: bool


def _typed(value: Any, ct: ColumnType) -> Any:
    """A bound from cdc.yaml in the column's value type (ISO text for dates and times)."""
    if isinstance(value, str) and ct.kind is Kind.DATE:
        return dt.date.fromisoformat(value)
    if isinstance(value, str) and ct.kind in (Kind.TIMESTAMP, Kind.TIMESTAMPTZ):
        moment = dt.datetime.fromisoformat(value)
        if ct.kind is Kind.TIMESTAMPTZ and moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        return moment
    return value


def _builtin(spec: CheckSpec, ct: ColumnType) -> pa.Check:
    v = spec.value
    if spec.kind == "ge":
        return pa.Check.ge(_typed(v, ct))
    if spec.kind == "le":
        return pa.Check.le(_typed(v, ct))
    if spec.kind == "between":
        return pa.Check.in_range(_typed(v[0], ct), _typed(v[1], ct))
    if spec.kind == "allowed":
        return pa.Check.isin([_typed(x, ct) for x in v])
    if spec.kind == "pattern":  # grouped: pandera's "^" + "a|b" would match b anywhere
        return pa.Check.str_matches(f"^(?:{v})")
    if spec.kind == "length":
        return pa.Check.str_length(v[0], v[1])
    raise AssertionError(spec.kind)  # pragma: no cover


def _unique(column: str) -> Callable[[Any], pl.LazyFrame]:
    """Rows whose value another key also has, among the newest row of each key."""

    def check(data: Any) -> pl.LazyFrame:
        keys = pl.when(pl.col(LAST)).then(pl.col(KEY)).drop_nulls().n_unique().over(column)
        ok = pl.col(column).is_null() | ~pl.col(LAST) | (keys <= 1)
        return data.lazyframe.select(ok.alias("ok"))  # type: ignore[no-any-return]

    return check


def _custom(spec: CheckSpec) -> Callable[[Any], pl.LazyFrame]:
    function = spec.function

    def check(data: Any) -> pl.LazyFrame:
        frame: pl.DataFrame = data.lazyframe.collect()
        user = frame.drop([c for c in (KEY, LAST) if c in frame.columns])
        result = function(user)
        if isinstance(result, pl.Expr):
            return user.lazy().select(result.alias("ok"))
        return pl.LazyFrame({"ok": pl.Series(result, dtype=pl.Boolean)})

    return check


def compile_contract(contract: TableContract, schema: TableSchema) -> _Compiled:
    """The pandera schema of a contract for one version of the table's schema."""
    names = set(schema.names)
    column_checks: dict[str, list[pa.Check]] = {}
    column_specs: dict[str, list[CheckSpec]] = {}
    not_null: dict[str, CheckSpec] = {}
    frame_checks: list[pa.Check] = []
    frame_specs: list[CheckSpec] = []
    columns: list[str] = []
    for spec in contract.checks:
        if spec.column is not None:
            if spec.column not in names:
                raise ContractError(
                    f"{spec.where}: column {spec.column!r} is not a column of {schema.table} "
                    f"(columns: {', '.join(schema.names)}); fix the check in cdc.yaml"
                )
            ct = schema.column(spec.column).type
            if ct.kind in _UNSUPPORTED:
                raise ContractError(
                    f"{spec.where}: column {spec.column!r} is an {ct} column; checks on "
                    "interval columns are not supported (use a custom check on other columns)"
                )
            if spec.column not in columns:
                columns.append(spec.column)
            if spec.kind == "not_null":
                not_null[spec.column] = spec
            elif spec.kind == "unique":
                frame_checks.append(pa.Check(_unique(spec.column), name=spec.name))
                frame_specs.append(spec)
            else:
                column_checks.setdefault(spec.column, []).append(_builtin(spec, ct))
                column_specs.setdefault(spec.column, []).append(spec)
        else:
            frame_checks.append(pa.Check(_custom(spec), name=spec.name))
            frame_specs.append(spec)
    if any(s.kind == "custom" for s in frame_specs):  # custom checks see every column
        columns += [c.name for c in schema.columns
                    if c.name not in columns and c.type.kind not in _UNSUPPORTED]  # fmt: skip
    pandera_columns = {
        name: pa.Column(
            None,
            checks=column_checks.get(name, []),
            nullable=name not in not_null,
            required=True,
        )
        for name in columns
    }
    compiled = _Compiled(
        schema=pa.DataFrameSchema(pandera_columns, checks=frame_checks),
        columns=tuple(columns),
        column_checks={k: tuple(v) for k, v in column_specs.items()},
        not_null=not_null,
        frame_checks=tuple(frame_specs),
        needs_key=any(s.kind == "unique" for s in frame_specs),
    )
    _dry_run(compiled, schema)
    return compiled


def _dry_run(c: _Compiled, schema: TableSchema) -> None:
    """Run the column checks on an empty frame of the columns' types: a check that can't run
    on its column (a regex polars doesn't support, ``>=`` a number on a text column, a length
    on a number) fails here, as a ContractError, instead of failing every row of every batch."""
    arrays = {
        name: column_array(schema.column(name).type, [], table=str(schema.table), column=name)
        for name in c.columns
    }
    frame = pl.from_arrow(pyarrow.table(arrays))
    assert isinstance(frame, pl.DataFrame)
    try:
        pa.DataFrameSchema(
            {n: col for n, col in c.schema.columns.items() if n in c.column_checks}
        ).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        problems = []
        for column, number, case in exc.failure_cases.select(
            ["column", "check_number", "failure_case"]
        ).iter_rows():
            spec = c.column_checks[column][number]
            error = " ".join(str(case).split("This error occurred")[0].split())[:300]
            problems.append(
                f"{spec.where}: check {spec.name!r} can't run on {schema.table}.{column} "
                f"({schema.column(column).type}): {error}"
            )
        raise ContractError("; ".join(problems)) from None


def _column(
    schema: TableSchema, name: str, rows: Sequence[ChangeEvent], toast: set[tuple[int, str]]
) -> pyarrow.Array:
    column = schema.column(name)
    values = []
    for i, event in enumerate(rows):
        assert event.after is not None
        value = event.after.get(name, column.default)
        if value is UNCHANGED_TOAST:
            toast.add((i, name))
            value = None
        values.append(value)
    try:
        if column.type.kind in (Kind.DECIMAL, Kind.VARDECIMAL):  # Arrow refuses what won't fit
            return pyarrow.array(values, type=arrow_type(column.type))
        return column_array(column.type, values, table=str(schema.table), column=name)
    except (DataError, pyarrow.ArrowInvalid, pyarrow.ArrowTypeError):
        # the warehouse will dead-letter such a value; check its text form meanwhile
        return pyarrow.array([None if v is None else str(v) for v in values], pyarrow.string())


class Validator:
    """Checks batches of one table against its contract (the pandera schema is cached)."""

    def __init__(self, contract: TableContract) -> None:
        self.contract = contract
        self._compiled: dict[tuple[Any, ...], _Compiled] = {}

    def compiled(self, schema: TableSchema) -> _Compiled:
        version = tuple((c.name, c.type) for c in schema.columns)
        found = self._compiled.get(version)
        if found is None:
            found = self._compiled[version] = compile_contract(self.contract, schema)
        return found

    def violations(self, batch: TableBatch) -> list[Violation]:
        """The events of the batch that fail at least one check, in batch order."""
        c = self.compiled(batch.schema)
        index = [i for i, e in enumerate(batch.events) if e.op is not Op.DELETE]
        if not index:
            return []
        rows = [batch.events[i] for i in index]
        toast: set[tuple[int, str]] = set()
        arrays = {name: _column(batch.schema, name, rows, toast) for name in c.columns}
        if c.needs_key:
            arrays.update(_key_columns(batch, index))
        frame = pl.from_arrow(pyarrow.table(arrays))
        assert isinstance(frame, pl.DataFrame)
        try:
            c.schema.validate(frame, lazy=True)
            return []
        except pa.errors.SchemaErrors as exc:
            failures = exc.failure_cases
        failed: dict[int, set[str]] = {}
        for column, check, number, row in failures.select(
            ["column", "check", "check_number", "index"]
        ).iter_rows():
            spec = _spec_of(c, column, check, number)
            targets = range(len(rows)) if row is None else (row,)
            for r in targets:
                if column is not None and (r, column) in toast:
                    continue
                failed.setdefault(r, set()).add(spec.name)
        order = {s.name: n for n, s in enumerate(self.contract.checks)}
        return [
            Violation(index[r], tuple(sorted(names, key=order.__getitem__)))
            for r, names in sorted(failed.items())
        ]


def _spec_of(c: _Compiled, column: str | None, check: str, number: int | None) -> CheckSpec:
    if column is not None and check == _NOT_NULL:
        return c.not_null[column]
    if column is not None and column in c.column_checks and number is not None:
        return c.column_checks[column][number]
    if column is None and number is not None:
        return c.frame_checks[number]
    for spec in c.frame_checks:
        if spec.name == check:
            return spec
    raise AssertionError(f"unexpected pandera failure: column {column!r}, check {check!r}")


def _key_columns(batch: TableBatch, index: Sequence[int]) -> dict[str, pyarrow.Array]:
    """The row's key (as text) and whether it is the key's newest event of the batch."""
    schema = batch.schema
    last: dict[tuple[Any, ...], int] = {}
    keys = []
    for i, event in enumerate(batch.events):
        key = tuple(event.key.get(k) for k in schema.key)
        last[key] = i
        keys.append(key)
    return {
        KEY: pyarrow.array([repr(keys[i]) for i in index], pyarrow.string()),
        LAST: pyarrow.array([last[keys[i]] == i for i in index], pyarrow.bool_()),
    }
