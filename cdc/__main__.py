"""``python -m cdc`` runs the command line."""

from cdc.cli import main

main()
