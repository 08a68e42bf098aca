"""Which addresses a gateway-run fetch may reach, and connecting only to the one checked.

A URL's host is resolved once, every address it resolves to must be public (or the exact
`host:port` opened by the operator), and the connection goes to that checked address: the
HTTP client gets a resolver that answers from the check (`PinnedResolver`), so a second DNS
answer (rebinding) cannot swap in another address. TLS still verifies the hostname.

Refused: loopback, private (RFC 1918, ULA), link-local (incl. the 169.254.169.254 and
fd00:ec2::254 metadata services), CGNAT 100.64/10, unspecified, multicast, reserved and
documentation ranges, and IPv6 forms that embed an IPv4 address (mapped, NAT64, 6to4,
Teredo) unless the embedded address is itself public. Legacy numeric hosts (`2130706433`,
`0x7f000001`, `127.1`) are caught because the check is made on what they resolve to.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Collection
from dataclasses import dataclass

from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_METADATA = frozenset({ipaddress.ip_address("169.254.169.254"),
                       ipaddress.ip_address("fd00:ec2::254")})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class Refused(Exception):
    """The URL may not be fetched: its scheme, credentials or address."""


@dataclass(frozen=True, slots=True)
class CheckedTarget:
    url: URL
    host: str  # lower case, no trailing dot, IPv6 without brackets
    port: int
    addresses: tuple[str, ...]  # the checked addresses the connection may use


def is_public(ip: IPAddress) -> bool:
    if ip in _METADATA:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return is_public(embedded)
        if ip.teredo is not None:
            return False
    return ip.is_global and not (ip.is_private or ip.is_loopback or ip.is_link_local
                                 or ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def host_key(host: str, port: int) -> str:
    """`host:port` as an operator writes it in allow_private (IPv6 in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_target(raw: str) -> tuple[URL, str, int]:
    """The URL, its normalised host and its port; Refused for what is never fetched."""
    try:
        url = URL(raw)
    except (ValueError, TypeError) as exc:
        raise Refused(f"not a valid URL: {raw[:200]!r}") from exc
    if url.scheme not in ("http", "https"):
        raise Refused(f"only http and https URLs can be fetched, not {url.scheme or 'this'!r}")
    if url.user is not None or url.password is not None:
        raise Refused("URLs with credentials are not fetched")
    host = (url.host or "").rstrip(".").lower()
    if not host or url.port is None:
        raise Refused("the URL has no host")
    return url, host, url.port


async def check_target(raw: str, allow_private: Collection[str]) -> CheckedTarget:
    """Resolve the URL's host and check every address; Refused when one is not public."""
    url, host, port = parse_target(raw)
    opened = host_key(host, port) in allow_private
    addresses = await _resolve(host, port)
    if not opened:
        for address in addresses:
            if not is_public(ipaddress.ip_address(address)):
                raise Refused(f"{host} resolves to a non-public address")
    return CheckedTarget(url, host, port, tuple(addresses))


async def _resolve(host: str, port: int) -> list[str]:
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        return [str(literal)]
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise LookupError(f"cannot resolve {host}") from exc
    # Scope ids (fe80::1%eth0) are dropped: such addresses are link-local and refused.
    found = list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))
    if not found:
        raise LookupError(f"{host} has no address")
    return found


class PinnedResolver(AbstractResolver):
    """Answers only for hosts that were checked, with the checked addresses."""

    def __init__(self) -> None:
        self._pins: dict[str, tuple[str, ...]] = {}

    def pin(self, target: CheckedTarget) -> None:
        self._pins[target.host] = target.addresses

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        addresses = self._pins.get(host.rstrip(".").lower())
        if addresses is None:
            raise OSError(f"{host} was not checked before connecting")
        return [{"hostname": host, "host": address, "port": port,
                 "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                 "proto": 0, "flags": socket.AI_NUMERICHOST} for address in addresses]

    async def close(self) -> None:
        self._pins.clear()
