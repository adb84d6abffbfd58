"""``python -m softbits`` runs the CLI."""

from softbits.cli import main

main()
