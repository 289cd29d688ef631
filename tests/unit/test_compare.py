"""Source vs warehouse comparison (cdc.compare): JSON as text, or as values for a warehouse that
keeps the value only."""

from __future__ import annotations

from decimal import Decimal

from cdc.compare import compare_rows

TYPES = {"id": "integer", "doc": "jsonb", "docs": "json[]"}
SOURCE = [{"id": 1, "doc": '{"n": 7, "ü": [1, 2.50]}', "docs": ['{"a": 1}']}]
NORMALISED = [{"id": 1, "doc": '{"n":7,"\\u00fc":[1,2.50]}', "docs": ['{"a":1}']}]


def test_json_text_must_match_by_default() -> None:
    diff = compare_rows("t", ["id"], TYPES, SOURCE, NORMALISED)
    assert diff.diffs == 1 and diff.different[0][1] == "doc"


def test_json_values_compare_parsed_and_numbers_stay_exact() -> None:
    assert compare_rows("t", ["id"], TYPES, SOURCE, NORMALISED, json_values=True).diffs == 0
    other = [{**NORMALISED[0], "doc": '{"n":7,"\\u00fc":[1,2.51]}'}]
    diff = compare_rows("t", ["id"], TYPES, SOURCE, other, json_values=True)
    assert diff.different == [
        ((1,), "doc", {"n": 7, "ü": [1, Decimal("2.50")]}, {"n": 7, "ü": [1, Decimal("2.51")]})
    ]
