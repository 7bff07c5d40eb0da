"""Outbound request guard: refuse internal addresses AFTER DNS resolution (SSRF protection).

Webhook URLs are chosen by API users, so without this an account could make hookline POST to
loopback services, the private network or a cloud metadata endpoint. The check must look at
the resolved IP, not the host name, and the connection must use that same resolved IP — so
:func:`guarded_connector` filters inside aiohttp's own resolution step (no DNS-rebinding gap
between a check and the connect). :meth:`OutboundGuard.check_url` is the same rule for code
that wants to refuse early (e.g. when a URL is saved or before a flow runner calls out).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import ResolveResult

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Cloud metadata endpoints, refused even where the ranges above would not catch them.
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)


class BlockedAddress(Exception):
    """The destination resolves to an address hookline must not call (not retried)."""

    def __init__(self, host: str, address: str | None = None, reason: str = "") -> None:
        self.host = host
        self.address = address
        detail = f"{host} -> {address}" if address and address != host else host
        super().__init__(f"outbound request to {detail} refused: {reason or 'blocked address'}")


def blocked_reason(address: IPAddress) -> str | None:
    """Why ``address`` may not be called, or None when it is a public unicast address."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return blocked_reason(mapped)
    if address in METADATA_ADDRESSES:
        return "metadata address"
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("not globally routable", not address.is_global),
    )
    for reason, hit in checks:
        if hit:
            return reason
    return None


class OutboundGuard:
    """The allow-list (host names and IPs/CIDRs) plus the blocked-range rule."""

    def __init__(self, allowlist: Iterable[str]) -> None:
        self._hosts: set[str] = set()
        self._networks: list[IPNetwork] = []
        for raw in allowlist:
            entry = raw.strip()
            if not entry:
                continue
            try:
                self._networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                self._hosts.add(_normal_host(entry))

    def host_allowed(self, host: str) -> bool:
        return _normal_host(host) in self._hosts

    def check_address(self, host: str, address: str) -> None:
        """Raise :class:`BlockedAddress` unless ``address`` (resolved for ``host``) may be used."""
        if self.host_allowed(host):
            return
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if any(ip.version == net.version and ip in net for net in self._networks):
            return
        reason = blocked_reason(ip)
        if reason:
            raise BlockedAddress(host, address, reason)

    def check_resolved(self, host: str, addresses: Sequence[str]) -> None:
        """All addresses must pass: a name mixing public and internal records is refused."""
        if not addresses:
            raise BlockedAddress(host, None, "no address")
        for address in addresses:
            self.check_address(host, address)

    async def check_url(self, url: str) -> None:
        """Resolve ``url``'s host and raise :class:`BlockedAddress` if it may not be called."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BlockedAddress(url, None, "only http(s) URLs with a host are allowed")
        host = parts.hostname
        if self.host_allowed(host):
            return
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
            addresses = [host]
        except ValueError:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            loop = asyncio.get_running_loop()
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as error:
                raise BlockedAddress(host, None, f"cannot resolve: {error}") from error
            addresses = [str(info[4][0]) for info in infos]
        self.check_resolved(host, addresses)


class GuardedConnector(aiohttp.TCPConnector):
    """A TCPConnector whose host resolution refuses blocked addresses.

    aiohttp connects to exactly the addresses ``_resolve_host`` returns (IP literals included,
    and DNS-cache hits too), so checking them here closes the DNS-rebinding window.
    """

    def __init__(self, guard: OutboundGuard, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._guard = guard

    async def _resolve_host(
        self, host: str, port: int, traces: Sequence[Any] | None = None
    ) -> list[ResolveResult]:
        results = await super()._resolve_host(host, port, traces=traces)
        self._guard.check_resolved(host, [str(result["host"]) for result in results])
        return results


def guarded_connector(guard: OutboundGuard, **tcp_kwargs: Any) -> aiohttp.TCPConnector:
    """A connector for outbound calls to user-chosen URLs. Raises BlockedAddress on request."""
    return GuardedConnector(guard, **tcp_kwargs)


def _normal_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()
