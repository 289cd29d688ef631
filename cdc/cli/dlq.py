"""``cdc dlq list | replay``: the dead-letter topics, messages that could not be applied."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from cdc.cli.console import Console
from cdc.cli.options import ConfigOpt

if TYPE_CHECKING:
    from cdc.config import Config
    from cdc.consumer.dlq import DeadLetter

app = typer.Typer(help="Dead-letter topics: messages that could not be applied.")
console = Console()


def _int(value: str | None) -> int | None:
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


def letter_json(letter: DeadLetter) -> dict[str, Any]:
    """One dead letter as ``cdc dlq list --json`` prints it: where it is (``topic``,
    ``partition``, ``offset``), where it came from (``original``), ``error`` and ``headers``."""
    from cdc.consumer.dlq import H_OFFSET, H_PARTITION, H_TOPIC

    h = letter.headers
    return {
        "topic": letter.topic,
        "partition": letter.partition,
        "offset": letter.offset,
        "original": {
            "topic": h.get(H_TOPIC),
            "partition": _int(h.get(H_PARTITION)),
            "offset": _int(h.get(H_OFFSET)),
        },
        "error": letter.error,
        "headers": h,
    }


def letters_table(letters: list[DeadLetter]) -> Table:
    """The dead letters as a table: dead-letter topic, partition, offset, origin, error."""
    from cdc.consumer.dlq import H_OFFSET, H_PARTITION, H_TOPIC

    table = Table(title=f"{len(letters)} dead letters")
    for col in ("dead-letter topic", "partition", "offset", "original", "error"):
        table.add_column(col, justify="right" if col in ("partition", "offset") else "left")
    for letter in letters:
        h = letter.headers
        table.add_row(
            letter.topic,
            str(letter.partition),
            str(letter.offset),
            f"{h.get(H_TOPIC)}[{h.get(H_PARTITION)}]@{h.get(H_OFFSET)}",
            letter.error[:200],
        )
    return table


def _client(cfg: Config) -> dict[str, Any]:
    """The configured librdkafka settings, with an unreachable broker as one warning and
    exit code 5 instead of librdkafka's raw lines."""
    from cdc.consumer.broker_watch import quiet_client

    return quiet_client(cfg.kafka.bootstrap_servers, cfg.kafka.client_config())


@app.command("list")
def list_(
    config: ConfigOpt = Path("cdc.yaml"),
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List dead letters of every configured table: the dead-letter topic, partition and
    offset, where each came from (topic[partition]@offset) and its error."""
    from cdc.cli import _load
    from cdc.cli.failures import expected_failures
    from cdc.consumer.dlq import read_dead_letters

    cfg = _load(config)
    topics = sorted({cfg.dlq_topic_for(t) for t in cfg.tables})  # tables may share one
    with expected_failures(cfg):
        letters = list(read_dead_letters(_client(cfg), topics))
    if as_json:
        for letter in letters:
            print(json.dumps(letter_json(letter)))
        return
    console.print(letters_table(letters))


@app.command("replay")
def replay(config: ConfigOpt = Path("cdc.yaml")) -> None:
    """Re-publish dead letters (not replayed before) to their original topics, after a fix.

    The running `cdc run` applies them through the normal path; its position guard keeps
    newer data from being overwritten by an old letter.
    """
    from cdc.cli import _load
    from cdc.cli.failures import expected_failures
    from cdc.consumer.dlq import replay_dead_letters

    cfg = _load(config)
    topics = sorted({cfg.dlq_topic_for(t) for t in cfg.tables})  # tables may share one
    with expected_failures(cfg):
        sent = replay_dead_letters(
            _client(cfg), topics, group_id=f"{cfg.kafka.group_id}-dlq-replay"
        )
    console.print(f"replayed {sent} dead letters")
