"""Entry point for `python -m daemon`."""

from daemon.cli import main

main()
