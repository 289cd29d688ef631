"""Debezium Connect JSON schemas -> :mod:`cdc.model` column types and row decoding plans.

:func:`column_type` maps one field schema to a :class:`~cdc.model.ColumnType`;
:func:`struct_plan` turns a row struct schema (the envelope's ``before``/``after`` or the key) into
a :class:`StructPlan`: the columns plus one decoder per field, built once and cached by the
envelope decoder. :func:`hint_plan` and :func:`infer_plan` build plans for schemaless envelopes,
from a known :class:`~cdc.model.TableSchema` or from the JSON values themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from cdc.decoding.values import (
    DECIMAL,
    LOGICAL_TYPES,
    PRIMITIVE_TYPES,
    SOURCE_LENGTH,
    DecodeError,
    Decoder,
    array_items,
    decimal_precision,
    decimal_scale,
    decoder_for_type,
    field_decoder,
    int_param,
    source_type,
    special_field,
)
from cdc.model import Column, ColumnType, Kind, TableId, TableSchema

_LENGTH_TYPES: Final = frozenset(
    {"VARCHAR", "BPCHAR", "CHAR", "CHARACTER", "CHARACTER VARYING", "NCHAR", "NVARCHAR"}
)
_MAX_PG_LENGTH: Final = 10_485_760  # varchar(n) limit; larger lengths mean "unbounded"


def column_type(schema: Mapping[str, Any]) -> ColumnType:
    """The column type a Connect field schema describes (see the mapping in the module doc of
    :mod:`cdc.model`); raises DecodeError for unknown logical names and types, and for the
    refused source types of :mod:`cdc.decoding.refusals`."""
    special = special_field(schema)
    if special is not None:
        return special[0]
    stype = source_type(schema)
    name = schema.get("name")
    if name is not None:
        logical = LOGICAL_TYPES.get(name)
        if logical is None:
            raise DecodeError(f"unknown logical type {name!r}")
        if name == DECIMAL:
            return ColumnType(
                Kind.DECIMAL,
                precision=decimal_precision(schema),
                scale=decimal_scale(schema),
                source_type=stype,
            )
        if logical.kind is Kind.ENUM:
            params = schema.get("parameters")
            allowed = params.get("allowed") if isinstance(params, Mapping) else None
            values = tuple(allowed.split(",")) if isinstance(allowed, str) and allowed else None
            return ColumnType(Kind.ENUM, enum_values=values, source_type=stype)
        return ColumnType(logical.kind, source_type=stype)
    typ = schema.get("type")
    primitive = PRIMITIVE_TYPES.get(typ) if isinstance(typ, str) else None
    if primitive is None:
        raise DecodeError(f"unknown schema type {typ!r}")
    kind = primitive[0]
    if kind is Kind.ARRAY:
        items = array_items(schema)
        element = column_type(items)
        if items is schema.get("items"):  # the element keeps no source type it wasn't sent
            return ColumnType(Kind.ARRAY, element=element, source_type=stype)
        return ColumnType(Kind.ARRAY, element=replace(element, source_type=None), source_type=stype)
    if kind is Kind.TEXT and stype and stype.upper() in _LENGTH_TYPES:
        length = int_param(schema, SOURCE_LENGTH)
        if length is not None and 0 < length <= _MAX_PG_LENGTH:
            return ColumnType(Kind.TEXT, length=length, source_type=stype)
    return ColumnType(kind, source_type=stype)


@dataclass(frozen=True, slots=True)
class StructPlan:
    """How to decode one row struct: its columns and, per column, (name, decoder, optional)."""

    columns: tuple[Column, ...]
    fields: tuple[tuple[str, Decoder, bool], ...]

    def decoder(self, name: str) -> Decoder | None:
        """The decoder of column ``name``, if the struct has one."""
        for field_name, decoder, _ in self.fields:
            if field_name == name:
                return decoder
        return None

    def decode(self, row: Any, placeholder: str, section: str) -> dict[str, Any]:
        """Decode a row JSON object; ``section`` ("after", "key"...) prefixes error fields."""
        if row.__class__ is not dict:
            raise DecodeError(f"expected object, got {type(row).__name__}", field=section)
        out: dict[str, Any] = {}
        name = ""
        try:
            for name, decoder, optional in self.fields:
                value = row.get(name)
                if value is None:
                    if not optional:
                        raise DecodeError("null value in non-optional field")
                    out[name] = None
                else:
                    out[name] = decoder(value, placeholder)
        except DecodeError as exc:
            raise exc.within(f"{section}.{name}") from None
        return out

    def decode_lenient(self, row: Any, placeholder: str) -> dict[str, Any]:
        """Decode what decodes; other fields become None.

        For ``before``: under the default REPLICA IDENTITY a delete's ``before`` holds only the
        key, and Debezium fills the other NOT NULL columns with placeholders ('' for a uuid)
        that need not be valid values. Nothing downstream relies on them.
        """
        if row.__class__ is not dict:
            raise DecodeError(f"expected object, got {type(row).__name__}", field="before")
        out: dict[str, Any] = {}
        for name, decoder, _optional in self.fields:
            value = row.get(name)
            try:
                out[name] = None if value is None else decoder(value, placeholder)
            except DecodeError:
                out[name] = None
        return out


def struct_plan(schema: Mapping[str, Any], section: str) -> StructPlan:
    """Plan for a Connect ``struct`` schema whose fields are table columns."""
    if schema.get("type") != "struct" or not isinstance(schema.get("fields"), list):
        raise DecodeError("expected a struct schema with fields", field=section)
    columns: list[Column] = []
    fields: list[tuple[str, Decoder, bool]] = []
    for item in schema["fields"]:
        name = item.get("field") if isinstance(item, Mapping) else None
        if not isinstance(name, str):
            raise DecodeError("struct field without a name", field=section)
        try:
            ctype = column_type(item)
            decoder = field_decoder(item)
        except DecodeError as exc:
            raise exc.within(f"{section}.{name}") from None
        optional = item.get("optional") is True
        columns.append(Column(name, ctype, optional, _default(item, decoder)))
        fields.append((name, decoder, optional))
    return StructPlan(tuple(columns), tuple(fields))


_NO_PLACEHOLDER = "\x00cdc: defaults are never unchanged-TOAST placeholders\x00"


def _default(item: Mapping[str, Any], decoder: Decoder) -> Any:
    """The field's ``default`` decoded like its values; None when absent or not decodable.

    Arrays are left out (a default here must be hashable, and array defaults are rare).
    """
    raw = item.get("default")
    if raw is None or isinstance(raw, list):
        return None
    try:
        return decoder(raw, _NO_PLACEHOLDER)
    except DecodeError:
        return None


def hint_plan(hint: TableSchema) -> StructPlan:
    """Plan for schemaless rows of a table whose schema is known."""
    fields = tuple((c.name, decoder_for_type(c.type), c.nullable) for c in hint.columns)
    return StructPlan(hint.columns, fields)


def infer_type(value: Any) -> ColumnType:
    """The column type a bare JSON value suggests (int->INT64, float->FLOAT64, ...)."""
    if value is None or isinstance(value, str):
        return ColumnType(Kind.TEXT)
    if isinstance(value, bool):
        return ColumnType(Kind.BOOLEAN)
    if isinstance(value, int):
        return ColumnType(Kind.INT64)
    if isinstance(value, float):
        return ColumnType(Kind.FLOAT64)
    if isinstance(value, dict):
        return ColumnType(Kind.JSON)
    if isinstance(value, list):
        first = next((v for v in value if v is not None), None)
        return ColumnType(Kind.ARRAY, element=infer_type(first))
    raise DecodeError(f"cannot infer a column type from {type(value).__name__}")


def infer_plan(row: Mapping[str, Any]) -> StructPlan:
    """Plan for one schemaless row with no hint: every column nullable, types from values."""
    columns: list[Column] = []
    fields: list[tuple[str, Decoder, bool]] = []
    for name, value in row.items():
        try:
            ctype = infer_type(value)
        except DecodeError as exc:
            raise exc.within(name) from None
        columns.append(Column(name, ctype, True))
        fields.append((name, decoder_for_type(ctype), True))
    return StructPlan(tuple(columns), tuple(fields))


def table_schema(table: TableId, plan: StructPlan, key: tuple[str, ...]) -> TableSchema:
    """The TableSchema of a row plan, for a table and its key column names."""
    return TableSchema(table, plan.columns, key)
