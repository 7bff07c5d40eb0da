"""``hookline listen`` and ``hookline trigger`` (to be filled in)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the developer-tool commands to the main app."""
