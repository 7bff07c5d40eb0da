"""TLS for outbound calls (deliveries and flow runs): the system's CAs, plus the PEM bundle of
``HOOKLINE_OUTBOUND_CA_FILE`` for receivers behind a private CA."""

from __future__ import annotations

import functools
import ssl
from pathlib import Path


@functools.lru_cache(maxsize=8)
def outbound_ssl(ca_file: Path | None) -> ssl.SSLContext | bool:
    """The verifying context for outbound HTTPS (``True``: aiohttp's default, the system's
    CAs). Cached: loading the system's CAs takes milliseconds."""
    if ca_file is None:
        return True
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=str(ca_file))
    return context
