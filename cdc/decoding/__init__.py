"""Debezium JSON envelopes -> typed :class:`cdc.model.ChangeEvent` records (pure, no I/O)."""

from cdc.decoding.envelope import Skip, SkipReason, decode_message
from cdc.decoding.values import DEFAULT_TOAST_PLACEHOLDER, DecodeError

__all__ = ["DEFAULT_TOAST_PLACEHOLDER", "DecodeError", "Skip", "SkipReason", "decode_message"]
