"""The local development key: ``hookline listen`` and ``trigger`` with no credentials.

On the machine that runs the server, with no API key given, both commands share one key of
an account named "local development", made on first use in the server's database and kept
in ``<data dir>/cli-key.json`` (mode 0600, beside ``secrets.json``). Only for a server on a
loopback address: a key made in a local database means nothing to a remote server.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from hookline.cli.common import note, on_database, settings_for
from hookline.store.capabilities import database_file

if TYPE_CHECKING:
    from hookline.platform.accounts import NewApiKey
    from hookline.runtime import Runtime

KEY_FILE_NAME = "cli-key.json"
ACCOUNT_NAME = "local development"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def local_development_key(server_url: str) -> tuple[Path, dict[str, Any]] | None:
    """The saved key (made now if needed), or None when there is no local server database."""
    if urlsplit(server_url).hostname not in LOOPBACK:
        return None
    settings = settings_for()
    path = settings.data_dir / KEY_FILE_NAME
    if path.is_file():
        return path, json.loads(path.read_text())
    file = database_file(settings.resolved_database_url)
    if file is not None and not file.is_file():
        return None  # no server has run here: nothing to make a key in

    async def work(runtime: Runtime) -> NewApiKey:
        from hookline.platform.accounts import create_account

        async with runtime.db.transaction() as conn:
            return await create_account(conn, ACCOUNT_NAME, now=runtime.clock.now())

    key = on_database(None, work, migrate=True)
    values = {
        "accountId": str(key.account_id),
        "clientId": key.client_id,
        "clientSecret": key.client_secret,
    }
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another command made one meanwhile: use that one
        return path, json.loads(path.read_text())
    with os.fdopen(fd, "w") as handle:
        json.dump(values, handle)
    note(f"no API key given: made one for the account {ACCOUNT_NAME!r}, kept in {path}")
    return path, values
