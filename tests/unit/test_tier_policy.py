"""Pure tiering decisions and the tiering settings' validation."""

from __future__ import annotations

import datetime as dt

import pytest

from cdc.config import ConfigError, dump_example_config, format_duration, parse_config
from cdc.tiering.policy import (
    TierFile,
    cutoffs,
    due_months,
    file_path,
    month_end,
    month_of,
    month_start,
    move_id,
)

UTC = dt.UTC


def _file(tier: str, month: str) -> TierFile:
    return TierFile("t", tier, month, f"/x/{tier}/{month}.parquet", 1, "0", 10, "m")  # type: ignore[arg-type]


def test_months_and_their_bounds() -> None:
    assert month_of(dt.datetime(2024, 12, 31, 23, 59, tzinfo=UTC)) == "2024-12"
    assert month_start("2024-12") == dt.datetime(2024, 12, 1, tzinfo=UTC)
    assert month_end("2024-12") == dt.datetime(2025, 1, 1, tzinfo=UTC)
    assert month_end("2024-02") == dt.datetime(2024, 3, 1, tzinfo=UTC)


def test_a_month_is_due_only_once_it_ended_before_the_cutoff() -> None:
    files = [_file("warm", "2024-01"), _file("warm", "2024-02"), _file("cold", "2023-12")]
    cutoff = dt.datetime(2024, 3, 1, tzinfo=UTC)
    assert due_months(files, "warm", cutoff) == ["2024-01", "2024-02"]
    assert due_months(files, "warm", cutoff - dt.timedelta(microseconds=1)) == ["2024-01"]
    assert due_months(files, "cold", cutoff) == ["2023-12"]


def test_cutoffs_and_names() -> None:
    now = dt.datetime(2026, 12, 1, tzinfo=UTC)
    c = cutoffs(now, dt.timedelta(days=30), dt.timedelta(days=365), dt.timedelta(days=2555))
    assert (c.hot, c.warm) == (now - dt.timedelta(days=30), now - dt.timedelta(days=365))
    assert move_id("hot_to_warm", "t", 1) == move_id("hot_to_warm", "t", 1)
    assert move_id("hot_to_warm", "t", 1) != move_id("hot_to_warm", "t", 2)
    assert file_path("s3://b/p/", "cold", "t", "2024-01", "m1") == (
        "s3://b/p/cold/t/month=2024-01/m1.parquet"
    )


def _with(policy: str, table: str = "public.products") -> str:
    text = dump_example_config()
    start = text.index("    tiering:")
    end = text.index("\ntiering:")
    return text[:start] + policy + text[end:]


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("    tiering: {hot: 30d, warm: 7y, retention: 7y}\n",
         "warm (2555d) must be shorter than retention (2555d)"),
        ("    tiering: {hot: 400d, warm: 365d}\n", "warm (365d) must be longer than hot (400d)"),
        ("    tiering: {hot: 30 days}\n", "must be a duration like 30d"),
        ("    tiering: {hot: 0s, warm: 1m}\n", "hot must be longer than 0"),
    ],
)  # fmt: skip
def test_a_bad_policy_is_refused_with_its_line(policy: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_with(policy))
    assert message in str(info.value)
    assert "tables[1].tiering" in str(info.value)


def test_a_table_without_history_cant_be_tiered() -> None:
    text = dump_example_config().replace(
        "    soft_delete: false          # true: keep deleted rows flagged by _cdc_deleted\n",
        "    soft_delete: false\n    tiering: {hot: 30d}\n",
    )
    with pytest.raises(ConfigError, match="keeps no history"):
        parse_config(text)


def test_durations_and_the_example() -> None:
    config = parse_config(dump_example_config())
    policy = config.tables[1].tiering
    assert policy is not None
    assert (policy.hot, policy.warm) == (dt.timedelta(days=30), dt.timedelta(days=365))
    assert format_duration(dt.timedelta(minutes=10)) == "10m"
    assert format_duration(dt.timedelta(seconds=90)) == "90s"
    assert config.tiering.target == ".cdc/tiers"
    assert config.tables[0].tiering is None


def test_storage_secrets_stay_hidden() -> None:
    text = dump_example_config().replace(
        "  storage_options: {}", "  storage_options: {key: k1, secret: s3cr3t}"
    )
    config = parse_config(text)
    assert "s3cr3t" not in repr(config)
    assert config.tiering.options() == {"key": "k1", "secret": "s3cr3t"}
