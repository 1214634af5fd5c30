"""Which address a request really comes from, when echat runs behind a reverse proxy.

Behind nginx every connection comes from the proxy's address, so the login limits per client
address would count every user as one. The proxy names the real client in `X-Forwarded-For`,
but anyone can send that header: it is believed only when the connection comes from an address
in the `trusted_proxies` setting. The header is read from its right end (the entry the nearest
proxy added) leftwards, skipping the trusted proxies, and the first address that is not one of
them is the client: entries further left were written by the client itself and prove nothing.

`TrustedProxies.rewrite(scope)` runs once per request in `EchatApp.asgi_app`, before anything
else reads the scope, so `request.remote_addr`, the login limits and the access log all see the
same client address. Pure functions of their arguments; used from the trio thread.
"""

from __future__ import annotations

import ipaddress
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """`"127.0.0.1, 10.0.0.0/8, ::1"` as networks; a bare address is a network of one.

    Raises ValueError naming the first entry that is neither.
    """
    networks = []
    for entry in text.split(","):
        entry = entry.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or network") from None
    return tuple(networks)


class TrustedProxies:
    def __init__(self, networks: tuple[Network, ...]) -> None:
        self.networks = networks

    def trusts(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:  # a Unix socket path, or no address at all
            return False
        return any(ip in network for network in self.networks)

    def client(self, peer: str, forwarded_for: list[str]) -> str:
        """The client's address: `peer` itself unless it is a trusted proxy; then the last
        entry of the `X-Forwarded-For` headers (in the order received) that is not one."""
        if not self.trusts(peer):
            return peer
        hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
        client = peer
        for hop in reversed(hops):
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                break  # garbage from the client: what is right of it is all that holds
            client = hop
            if not self.trusts(hop):
                break
        return client

    def rewrite(self, scope: dict[str, Any]) -> None:
        """Put the client's address into an ASGI scope in place of a trusted proxy's."""
        if not self.networks or not scope.get("client"):
            return
        peer, port = scope["client"]
        forwarded = [value.decode("latin-1") for name, value in scope.get("headers", ())
                     if name.lower() == b"x-forwarded-for"]
        client = self.client(peer, forwarded)
        if client != peer:
            scope["client"] = (client, 0)
