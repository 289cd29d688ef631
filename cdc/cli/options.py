"""Options shared by the ``cdc`` subcommand modules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigOpt = Annotated[
    Path, typer.Option("--config", "-c", help="The cdc.yaml file.", envvar="CDC_CONFIG")
]
