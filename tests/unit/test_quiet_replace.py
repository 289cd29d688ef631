"""The pure parts of the keyless re-load (:mod:`cdc.reconcile.quiet`): Debezium's 32-bit
``txId`` widened to PostgreSQL's 64-bit ``xid8`` against a snapshot's ``xmax``, and source
floats kept as they are for the apply (NaN too)."""

from __future__ import annotations

import math

import pytest

from cdc.model import ColumnType, Kind
from cdc.reconcile.quiet import full_xid
from cdc.reconcile.repair import model_value

EPOCH = 1 << 32


@pytest.mark.parametrize(
    ("txid", "xmax", "full"),
    [
        (700, 800, 700),  # before xmax, same epoch
        (800, 800, 800),
        (900, 800, 900),  # after xmax: not visible
        (EPOCH - 10, EPOCH + 5, EPOCH - 10),  # from the epoch before xmax's
        (3, EPOCH - 2, EPOCH + 3),  # from the epoch after xmax's
        (5, 3 * EPOCH + 10, 3 * EPOCH + 5),
        (EPOCH - 1, 3 * EPOCH + 10, 3 * EPOCH - 1),
        (3 * EPOCH + 7, 3 * EPOCH + 10, 3 * EPOCH + 7),  # a 64-bit id as it is
    ],
)
def test_a_32_bit_txid_is_widened_to_the_id_nearest_xmax(txid: int, xmax: int, full: int) -> None:
    assert full_xid(txid, xmax) == full
    assert full_xid(txid, xmax) % EPOCH == txid % EPOCH


def test_floats_reach_the_apply_as_they_are() -> None:
    f64 = ColumnType(Kind.FLOAT64)
    assert math.isnan(model_value(f64, float("nan")))
    assert math.copysign(1.0, model_value(f64, -0.0)) == -1.0
    array = model_value(ColumnType(Kind.ARRAY, element=f64), [float("nan"), 1.5])
    assert math.isnan(array[0]) and array[1] == 1.5
