"""Where a callback may go: the address policy (every IPv6 form that embeds or reaches a private IPv4 address is
refused) and an HTTP connection that goes to the address that was validated, not to a second DNS answer.

- :func:`is_public` — loopback, private, link-local, multicast, reserved, unspecified, CGNAT, IPv6 site-local
  (``fec0::/10``) and ULA are refused; IPv4-mapped (``::ffff:a.b.c.d``), IPv4-compatible (``::a.b.c.d``), 6to4
  (``2002::/16``), NAT64 (``64:ff9b::/96``, ``64:ff9b:1::/48``) and Teredo (``2001::/32``) are judged by the IPv4
  address they embed (Teredo: both its server and its client) — and NAT64/Teredo, which only reach IPv4 through a
  translator, are refused outright.
- :class:`PinnedBackend` — an httpcore network backend that connects a host only to the IP pinned for it in
  :data:`PINNED` (a context variable set around one delivery), so DNS rebinding between check and connect is moot.
"""

from __future__ import annotations

import contextvars
import ipaddress
from collections.abc import Iterable, Mapping

import httpcore
import httpx

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_TEREDO = ipaddress.ip_network("2001::/32")
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")
_IPV4_COMPAT = ipaddress.ip_network("::/96")

# host -> the validated IP address to connect to, for the delivery running in this context.
PINNED: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar("tritone_pinned_hosts", default=None)


def _special(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Private, loopback, link-local, multicast, reserved or unspecified: what neither version may reach."""
    return ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified


def _v4_public(ip: ipaddress.IPv4Address) -> bool:
    return not (_special(ip) or ip in _CGNAT or ip == ipaddress.IPv4Address("255.255.255.255"))


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (mapped, compatible, 6to4, NAT64, Teredo); empty if none."""
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip in _IPV4_COMPAT and int(ip) > 1:  # ::a.b.c.d (deprecated IPv4-compatible); :: and ::1 are handled apart
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF))
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if any(ip in net for net in _NAT64):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF))
    return found


def is_public(address: str) -> bool:
    """True when ``address`` (an IP literal, IPv6 zone allowed) is a public unicast address a callback may reach."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv4Address):
        return _v4_public(ip)
    if any(ip in net for net in _NAT64) or ip in _TEREDO:
        return False  # reaches IPv4 through a translator we cannot see past
    embedded = embedded_ipv4(ip)
    if embedded and not all(_v4_public(v4) for v4 in embedded):
        return False
    if ip.ipv4_mapped is not None or (ip in _IPV4_COMPAT and int(ip) > 1):
        return True  # judged entirely by the embedded address
    return not (_special(ip) or ip.is_site_local or ip in _SITE_LOCAL)


def refused(addresses: Iterable[str]) -> list[str]:
    """The addresses of ``addresses`` that :func:`is_public` refuses, sorted."""
    return sorted(a for a in set(addresses) if not is_public(a))


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to pinned addresses: a host with no pin in :data:`PINNED` is an error, never a DNS lookup."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()
        self.connected: list[tuple[str, str, int]] = []  # (host, ip, port), newest last — for tests and logs

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[object] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        ip = (PINNED.get() or {}).get(host.strip("[]"))
        if ip is None:
            raise httpcore.ConnectError(f"no validated address for host {host!r}; refusing to resolve it again")
        self.connected.append((host, ip, port))
        del self.connected[:-32]
        return await self._inner.connect_tcp(
            ip,
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,  # type: ignore[arg-type]
        )

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[object] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("callbacks never use unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def pinned_client(*, timeout_s: float) -> tuple[httpx.AsyncClient, PinnedBackend]:
    """An HTTP client whose connections go only to :data:`PINNED` addresses (no proxies from the environment, no
    redirects, no keep-alive: each delivery connects to the address validated for it)."""
    backend = PinnedBackend()
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    # httpx builds its httpcore pool without a network-backend argument; swap in one that uses ours (same options).
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=100,
        max_keepalive_connections=0,
        network_backend=backend,
    )
    client = httpx.AsyncClient(transport=transport, timeout=timeout_s, follow_redirects=False, trust_env=False)
    return client, backend
