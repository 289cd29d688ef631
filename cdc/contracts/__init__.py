"""Data contracts: declared per-table checks, validated with pandera on every decoded batch."""

from cdc.contracts.spec import CheckSpec, OnViolation, TableContract
from cdc.contracts.validate import ContractError, Validator, Violation

__all__ = ["CheckSpec", "ContractError", "OnViolation", "TableContract", "Validator", "Violation"]
