"""SSRF-safe image fetching: only public addresses, checked after DNS and on every redirect.

No test here reaches beyond loopback: names are resolved by a patched `socket.getaddrinfo`, and
a private address is refused before any connection is made (the transport would fail loudly).
The local image server on 127.0.0.1 is reachable only through the tests' allow-list.
"""

from __future__ import annotations

import base64
import http.server
import io
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from PIL import Image

from apps.providers.vision import FetchPolicy, ImageError, decode_data_url, fetch_image, is_allowed

LOOPBACK = (ipaddress.ip_network("127.0.0.1/32"),)


def _png(size=(8, 8), colour="red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


PNG = _png()


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, str], bytes, float]] = {}

    def do_GET(self) -> None:
        status, headers, body, delay_s = self.routes.get(self.path, (404, {}, b"", 0.0))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if delay_s:  # a slow server: one byte at a time
            for byte in body:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(delay_s)
        else:
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def image_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    base = f"http://127.0.0.1:{server.server_address[1]}"
    png = {"Content-Type": "image/png", "Content-Length": str(len(PNG))}
    big = b"\x89PNG" + b"0" * 5000
    _Handler.routes = {
        "/cat.png": (200, png, PNG, 0.0),
        "/page.html": (200, {"Content-Type": "text/html"}, b"<html></html>", 0.0),
        "/missing.png": (404, {"Content-Type": "text/plain"}, b"no", 0.0),
        "/big.png": (200, {"Content-Type": "image/png", "Content-Length": str(len(big))}, big, 0.0),
        "/big-chunked.png": (200, {"Content-Type": "image/png"}, big, 0.0),
        "/slow.png": (200, {"Content-Type": "image/png"}, PNG, 0.2),
        "/to-cat": (302, {"Location": "/cat.png"}, b"", 0.0),
        "/to-private": (302, {"Location": "http://10.0.0.9/x.png"}, b"", 0.0),
        "/to-metadata-name": (301, {"Location": "http://metadata.example/latest"}, b"", 0.0),
        "/loop": (302, {"Location": "/loop"}, b"", 0.0),
    }
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base
    server.shutdown()
    server.server_close()


@pytest.fixture
def fake_dns(monkeypatch):
    """Names under .example resolve to the given addresses; anything else is not looked up."""
    table: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in table:
            return [
                (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (a, port))
                for a in table[host]
            ]  # fmt: skip
        if host.endswith(".example"):
            raise socket.gaierror("name not known")
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return table


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
     "0.0.0.0", "224.0.0.1", "255.255.255.255", "240.0.0.1", "::1", "::", "fe80::1", "fc00::1",
     "::ffff:10.0.0.1", "::ffff:127.0.0.1", "2002:a00:1::1", "64:ff9b::a00:1", "ff02::1"],
)  # fmt: skip
def test_private_and_special_addresses_are_refused(address):
    assert not is_allowed(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address):
    assert is_allowed(ipaddress.ip_address(address))


async def test_loopback_is_refused_without_the_allow_list(image_server):
    with pytest.raises(ImageError, match="private or reserved"):
        await fetch_image(f"{image_server}/cat.png", FetchPolicy())


async def test_localhost_by_name_is_refused(image_server):
    url = image_server.replace("127.0.0.1", "localhost")
    with pytest.raises(ImageError, match="private or reserved"):
        await fetch_image(url, FetchPolicy())


@pytest.mark.parametrize("address", ["10.0.0.5", "169.254.169.254", "::1", "fd00::5"])
async def test_a_name_resolving_to_a_private_address_is_refused(fake_dns, address):
    fake_dns["images.example"] = [address]
    with pytest.raises(ImageError, match="private or reserved"):
        await fetch_image("http://images.example/cat.png", FetchPolicy())


async def test_a_name_with_any_private_address_is_refused(fake_dns):
    fake_dns["mixed.example"] = ["93.184.216.34", "10.0.0.5"]
    with pytest.raises(ImageError, match="private or reserved"):
        await fetch_image("https://mixed.example/cat.png", FetchPolicy())


async def test_the_allow_list_lets_tests_reach_their_server(image_server):
    image = await fetch_image(f"{image_server}/cat.png", FetchPolicy(allowed_networks=LOOPBACK))
    assert image.data == PNG and image.content_type == "image/png"


async def test_redirects_are_followed_and_checked(image_server):
    policy = FetchPolicy(allowed_networks=LOOPBACK)
    assert (await fetch_image(f"{image_server}/to-cat", policy)).data == PNG


async def test_a_redirect_to_a_private_address_is_refused(image_server):
    with pytest.raises(ImageError, match="private or reserved"):
        await fetch_image(f"{image_server}/to-private", FetchPolicy(allowed_networks=LOOPBACK))


async def test_a_redirect_to_a_name_resolving_privately_is_refused(image_server, fake_dns):
    fake_dns["metadata.example"] = ["169.254.169.254"]
    with pytest.raises(ImageError, match="private or reserved"):
        await fetch_image(
            f"{image_server}/to-metadata-name", FetchPolicy(allowed_networks=LOOPBACK)
        )


async def test_redirect_loops_end(image_server):
    with pytest.raises(ImageError, match="Too many redirects"):
        await fetch_image(f"{image_server}/loop", FetchPolicy(allowed_networks=LOOPBACK))


@pytest.mark.parametrize("path", ["/big.png", "/big-chunked.png"])
async def test_oversized_images_are_refused(image_server, path):
    policy = FetchPolicy(max_bytes=1000, allowed_networks=LOOPBACK)
    with pytest.raises(ImageError, match="larger than the limit of 1000 bytes"):
        await fetch_image(f"{image_server}{path}", policy)


async def test_slow_images_time_out(image_server):
    policy = FetchPolicy(timeout_s=1.0, allowed_networks=LOOPBACK)
    started = time.monotonic()
    with pytest.raises(ImageError, match="Timed out"):
        await fetch_image(f"{image_server}/slow.png", policy)
    assert time.monotonic() - started < 3


async def test_content_that_is_not_an_image_is_refused(image_server):
    with pytest.raises(ImageError, match="text/html"):
        await fetch_image(f"{image_server}/page.html", FetchPolicy(allowed_networks=LOOPBACK))


async def test_http_errors_are_reported(image_server):
    with pytest.raises(ImageError, match="HTTP 404"):
        await fetch_image(f"{image_server}/missing.png", FetchPolicy(allowed_networks=LOOPBACK))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/a.png", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("http://user:secret@example.com/a.png", "credentials"),
        ("http://nowhere.example/a.png", "Could not resolve"),
    ],
)
async def test_bad_urls_are_refused(fake_dns, url, message):
    with pytest.raises(ImageError, match=message):
        await fetch_image(url, FetchPolicy())


def test_data_urls_are_decoded():
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert decode_data_url(url, FetchPolicy()).data == PNG


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("data:image/png;base64,not base64!", "not valid base64"),
        ("data:text/plain;base64,aGVsbG8=", "text/plain"),
        ("data:image/png,rawbytes", "must be base64"),
        ("data:image/png;base64," + base64.b64encode(b"x" * 2000).decode(), "larger than"),
    ],
)
def test_bad_data_urls_are_refused(url, message):
    with pytest.raises(ImageError, match=message):
        decode_data_url(url, FetchPolicy(max_bytes=1000))
