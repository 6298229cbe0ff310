"""``python -m pipevault`` runs the command line."""

from pipevault.cli import main

main()
