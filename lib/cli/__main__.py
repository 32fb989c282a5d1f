"""`python -m lib.cli`: the terminal entry point."""

from lib.cli.app import main

main()
