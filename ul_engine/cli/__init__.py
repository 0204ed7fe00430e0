"""The `ul` command line (`python -m ul_engine.cli`)."""

from ul_engine.cli.main import main as main
