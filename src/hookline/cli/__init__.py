"""The ``hookline`` command line (typer + rich)."""
