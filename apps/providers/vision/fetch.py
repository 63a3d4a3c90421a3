"""Downloading a client's image URL without letting it reach inside our network (SSRF).

A URL is only a request to fetch something on the public internet:

- http and https only, no credentials in the URL;
- the host is resolved here and every address it resolves to must be public (not private,
  loopback, link-local, shared, reserved, multicast, nor an IPv6 form that embeds one); the
  connection then goes to that vetted address, so a second DNS answer cannot swap it
  (DNS rebinding), with the original name kept for the Host header and TLS (SNI and
  certificate check);
- redirects are followed by hand, each hop checked the same way, at most `max_redirects`;
- proxies from the environment are ignored (a proxy would make its own DNS lookup);
- the whole download, DNS included, must finish within `timeout_s`, and the body may not exceed
  `max_bytes`;
- the response must be 200 with an image content type we can read.

`allowed_networks` exempts address ranges from the public-address rule. It exists for tests,
which serve images from 127.0.0.1, and is empty unless the setting
PLUGSKY_IMAGE_FETCH_ALLOWED_NETWORKS names networks; production must leave it empty.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class ImageError(Exception):
    """An image that cannot be used (fetched, decoded); the message is safe to show clients."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class FetchPolicy:
    max_bytes: int = 10 * 1024 * 1024
    timeout_s: float = 10.0
    max_redirects: int = 3
    allowed_networks: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True)
class FetchedImage:
    data: bytes
    content_type: str


async def fetch_image(url: str, policy: FetchPolicy) -> FetchedImage:
    """The image at `url`, or ImageError saying why not."""
    try:
        async with asyncio.timeout(policy.timeout_s):
            return await _fetch(url, policy)
    except TimeoutError:
        raise ImageError(
            f"Timed out downloading the image: it must arrive within {policy.timeout_s:g} s."
        ) from None
    except httpx.HTTPError as failure:
        raise ImageError(f"Could not download the image: {_reason(failure)}.") from None


async def _fetch(url: str, policy: FetchPolicy) -> FetchedImage:
    timeout = httpx.Timeout(policy.timeout_s)
    client = httpx.AsyncClient(trust_env=False, follow_redirects=False, timeout=timeout)
    async with client:
        for _ in range(policy.max_redirects + 1):
            target = _checked_url(url)
            address = await vetted_address(target, policy)
            async with _get(client, target, address) as response:
                location = response.headers.get("location")
                if response.status_code in _REDIRECTS and location:
                    url = str(target.join(location))
                    continue
                return await _image_body(response, policy)
    raise ImageError(f"Too many redirects: at most {policy.max_redirects} are followed.")


def _checked_url(url: str) -> httpx.URL:
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL:
        raise ImageError("The image URL is not a valid URL.") from None
    if target.scheme not in {"http", "https"}:
        raise ImageError("Image URLs must use http or https (or be a data: URL).")
    if not target.host:
        raise ImageError("The image URL has no host.")
    if target.userinfo:
        raise ImageError("Image URLs must not contain credentials.")
    return target


async def vetted_address(target: httpx.URL, policy: FetchPolicy) -> IPAddress:
    """An address of the URL's host, after checking that every one it resolves to is public."""
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            target.host, port, type=socket.SOCK_STREAM
        )
    except OSError:
        raise ImageError(f"Could not resolve the image host '{target.host}'.") from None
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not addresses:
        raise ImageError(f"Could not resolve the image host '{target.host}'.")
    for address in addresses:
        if not is_allowed(address, policy.allowed_networks):
            raise ImageError(
                f"The image host '{target.host}' resolves to a private or reserved address; "
                "only images on the public internet can be fetched."
            )
    return addresses[0]


def is_allowed(address: IPAddress, allowed_networks: tuple[IPNetwork, ...] = ()) -> bool:
    """A public address, or one inside an explicitly allowed network."""
    if any(address in network for network in allowed_networks):
        return True
    return all(_is_public(candidate) for candidate in _embedded(address))


def _embedded(address: IPAddress) -> list[IPAddress]:
    """The address and every IPv4 address an IPv6 form carries inside it."""
    found: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            found.append(address.ipv4_mapped)
        if address.sixtofour:
            found.append(address.sixtofour)
        if address.teredo:
            found.extend(address.teredo)
        if address in _NAT64:
            found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def _is_public(address: IPAddress) -> bool:
    return address.is_global and not (
        address.is_multicast or address.is_reserved or address.is_unspecified
    )


def _get(client: httpx.AsyncClient, target: httpx.URL, address: IPAddress) -> Any:
    pinned = target.copy_with(host=str(address))
    host = target.host if target.port is None else f"{target.host}:{target.port}"
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    return client.stream(
        "GET",
        pinned,
        headers={"Host": host, "Accept": ", ".join(sorted(IMAGE_TYPES))},
        extensions=extensions,
    )


async def _image_body(response: httpx.Response, policy: FetchPolicy) -> FetchedImage:
    if response.status_code != 200:
        raise ImageError(f"The image URL answered with HTTP {response.status_code}.")
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in IMAGE_TYPES:
        raise ImageError(
            f"The image URL returned content of type '{content_type or 'unknown'}'; supported "
            "image types are PNG, JPEG, GIF and WEBP."
        )
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > policy.max_bytes:
        raise _too_large(policy)
    body = bytearray()
    async for piece in response.aiter_bytes():
        body.extend(piece)
        if len(body) > policy.max_bytes:
            raise _too_large(policy)
    return FetchedImage(bytes(body), content_type)


def _too_large(policy: FetchPolicy) -> ImageError:
    return ImageError(f"The image is larger than the limit of {policy.max_bytes} bytes.")


def _reason(failure: httpx.HTTPError) -> str:
    text = str(failure) or type(failure).__name__
    return text.splitlines()[0]


def decode_data_url(url: str, policy: FetchPolicy) -> FetchedImage:
    """The image inside a `data:image/...;base64,...` URL."""
    header, comma, payload = url.partition(",")
    media_type, *options = header.removeprefix("data:").split(";")
    if not comma or "base64" not in options:
        raise ImageError("Image data URLs must be base64: data:image/png;base64,<data>.")
    if media_type.lower() not in IMAGE_TYPES:
        raise ImageError(
            f"The data URL has type '{media_type or 'unknown'}'; supported image types are "
            "PNG, JPEG, GIF and WEBP."
        )
    if len(payload) > policy.max_bytes * 4 // 3 + 4:
        raise _too_large(policy)
    try:
        data = base64.b64decode(payload, validate=True)
    except ValueError:
        raise ImageError("The image data URL is not valid base64.") from None
    if len(data) > policy.max_bytes:
        raise _too_large(policy)
    return FetchedImage(data, media_type.lower())
