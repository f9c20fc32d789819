"""``python -m cli`` runs the ``countersign`` command (how the dev stack starts its worker processes)."""

from cli.main import main

main()
