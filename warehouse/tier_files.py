"""The records of lifecycle tiering the warehouse stores: tiers, kinds of move, tier files.

Defined here, in the warehouse layer, so the warehouse's tiering statements don't reach up
into :mod:`cdc.tiering`; :mod:`cdc.tiering.policy` re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Tier = Literal["warm", "cold"]
MoveKind = Literal["hot_to_warm", "warm_to_cold", "expire", "restore"]


@dataclass(frozen=True, slots=True)
class TierFile:
    """One Parquet file of a table's history in a tier (a row of ``_cdc.tier_files``)."""

    table: str
    tier: Tier
    month: str  # YYYY-MM of the rows' closing time
    path: str
    rows: int
    checksum: str
    bytes: int
    move_id: str
