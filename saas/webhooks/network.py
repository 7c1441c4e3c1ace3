"""Calling tenants' endpoints without letting a tenant reach Atrium's own network (SSRF).

Two layers. When an endpoint is saved, its URL must be http(s) (http only with
WEBHOOK_ALLOW_HTTP), carry no credentials, and not name a private address or `localhost`. At
every delivery the host is resolved once, the request is refused if ANY address it resolves to
is private, loopback, link-local, multicast, reserved or unspecified (IPv4 and IPv6, including
IPv4 embedded in IPv6), and the connection goes to the checked address: the URL is rewritten to
that IP, with the Host header and TLS SNI (and so certificate checks) still naming the host, so
DNS answering differently between check and connect (rebinding) changes nothing. No proxy from
the environment, no redirects. WEBHOOK_ALLOW_PRIVATE_NETWORKS relaxes the address checks only.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx2
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

from saas.webhooks.models import URL_MAX_CHARS

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# IPv4 addresses carried inside IPv6 ones reach the IPv4 host on networks that route them.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_USER_AGENT = "Atrium-Webhooks/1"

PRIVATE_ADDRESS = (
    "This URL points to a private, local or reserved address; webhooks go to public addresses only."
)


class AddressRefused(Exception):
    """The URL is not allowed (now); retrying will not help. The message is safe to show."""


class DeliveryFailed(Exception):
    """The attempt failed in a way a later attempt may not (DNS, connect, timeout, TLS)."""


def _embedded(address: IPAddress) -> Iterator[IPAddress]:
    yield address
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            yield address.ipv4_mapped
        if address.sixtofour is not None:
            yield address.sixtofour
        if address.teredo is not None:
            yield from address.teredo
        if address in _NAT64:
            yield ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)


def address_is_public(address: IPAddress) -> bool:
    """False for any private, loopback, link-local, multicast, reserved, unspecified or
    otherwise non-global address, also one embedded in an IPv6 address."""
    return all(
        candidate.is_global
        and not (
            candidate.is_private
            or candidate.is_loopback
            or candidate.is_link_local
            or candidate.is_multicast
            or candidate.is_reserved
            or candidate.is_unspecified
        )
        for candidate in _embedded(address)
    )


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def endpoint_url_check(url: str) -> None:
    """Raises ValidationError (a message for the tenant) for a URL webhooks may not use."""
    if len(url) > URL_MAX_CHARS:
        raise ValidationError(f"Use at most {URL_MAX_CHARS} characters.")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValidationError("Enter an https:// URL.")
    if parts.scheme == "http" and not settings.WEBHOOK_ALLOW_HTTP:
        raise ValidationError("Use https://: webhooks are only sent over TLS.")
    if "@" in parts.netloc:
        raise ValidationError(
            "Remove the user name and password from the URL: receivers authenticate webhooks "
            "by their signature."
        )
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError:
        raise ValidationError("Enter a valid URL.") from None
    if settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS:
        return
    host = (parts.hostname or "").rstrip(".")
    literal = _ip_literal(host)
    if (literal is not None and not address_is_public(literal)) or (
        host == "localhost" or host.endswith(".localhost")
    ):
        raise ValidationError(PRIVATE_ADDRESS)


@dataclass(frozen=True)
class Target:
    """Where one attempt connects: the URL with the host replaced by the checked address."""

    url: httpx2.URL
    host_header: str
    sni_hostname: str | None


def target_resolve(url: str) -> Target:
    """Check the URL again (settings may have changed since it was saved), resolve its host and
    check every address. Raises AddressRefused or DeliveryFailed (no address)."""
    try:
        endpoint_url_check(url)
    except ValidationError as error:
        raise AddressRefused(error.messages[0]) from None
    parsed = httpx2.URL(url)
    host = parsed.raw_host.decode("ascii")  # IDNA-encoded; an IPv6 literal without brackets
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise DeliveryFailed(f"Could not resolve {host}.") from None
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    if not addresses:
        raise DeliveryFailed(f"Could not resolve {host}.")
    if not settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS and not all(
        address_is_public(address) for address in addresses
    ):
        raise AddressRefused(f"{host} resolves to a private, local or reserved address.")
    pinned = addresses[0]
    return Target(
        url=parsed.copy_with(host=str(pinned)),
        host_header=parsed.netloc.decode("ascii"),
        sni_hostname=None if _ip_literal(host) else host,
    )


def signed_post(*, url: str, body: str, headers: dict[str, str]) -> int:
    """POST `body` (JSON) to `url` at its checked address; returns the response status (the
    response body is never read). Raises AddressRefused or DeliveryFailed."""
    target = target_resolve(url)
    request_headers = {
        **headers,
        "Host": target.host_header,
        "Content-Type": "application/json",
        "User-Agent": _USER_AGENT,
    }
    extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else {}
    timeout = httpx2.Timeout(settings.WEBHOOK_TIMEOUT_S)
    try:
        # trust_env=False: no proxy or .netrc from the environment (a proxy would connect to
        # the name again, not to the checked address).
        client = httpx2.Client(timeout=timeout, follow_redirects=False, trust_env=False)
        with client, client.stream(
            "POST", target.url, content=body.encode(), headers=request_headers,
            extensions=extensions,
        ) as response:  # fmt: skip
            return response.status_code
    except httpx2.TimeoutException:
        raise DeliveryFailed(f"No response within {settings.WEBHOOK_TIMEOUT_S} s.") from None
    except httpx2.ConnectError:
        raise DeliveryFailed("Could not connect (refused, unreachable or TLS failure).") from None
    except httpx2.HTTPError as error:
        raise DeliveryFailed(f"The request failed ({type(error).__name__}).") from None
