"""``hookline integrations ...`` (to be filled in)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Manage the connector catalog.", no_args_is_help=True)
