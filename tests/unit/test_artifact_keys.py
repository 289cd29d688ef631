"""Prefect artifact keys take only lowercase letters, digits and dashes: a table named
``order_items`` (or any quoted name) failed the whole bulk snapshot flow run with
``ValidationError: Artifact key must only contain lowercase letters, numbers, and dashes``."""

from __future__ import annotations

import re

import pytest

from flows.snapshot import artifact_key

VALID = re.compile(r"[a-z0-9-]+")


@pytest.mark.parametrize(
    "name",
    ["order_items", "Order Items", "ÉTÉ", 'we"ird.name', "x" * 200, "___", "CamelCase", "a-b"],
)
def test_every_table_name_gives_a_valid_key(name: str) -> None:
    key = artifact_key("cdc-snapshot", name)
    assert VALID.fullmatch(key), key
    assert key.startswith("cdc-snapshot-")


def test_a_plain_name_keeps_its_key() -> None:
    assert artifact_key("cdc-snapshot", "items") == "cdc-snapshot-items"


def test_names_that_slug_alike_get_different_keys() -> None:
    names = ["order_items", "order-items", "Order Items", "ORDER_ITEMS", "order items"]
    assert len({artifact_key("cdc-snapshot", n) for n in names}) == len(names)
