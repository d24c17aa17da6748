"""A loopback HTTPS proxy that sends a vendor's hard-coded host to the sandbox.

tap-salesforce logs in at ``https://login.salesforce.com`` and meltano-tap-hubspot calls
``https://api.hubapi.com``: neither host can be configured, and the extractors' code is
not ours to change. They use ``requests``, which honours ``HTTPS_PROXY``; so the bench
runs them with ``HTTPS_PROXY`` pointing here and ``REQUESTS_CA_BUNDLE`` trusting a
certificate this module makes for those host names. For each ``CONNECT`` to a routed host
the proxy answers with that certificate (it is the TLS end the extractor sees) and relays
the bytes to the sandbox (over TLS for Salesforce, plain http for HubSpot). A ``CONNECT``
to any other host is refused: nothing leaves the machine.

After login tap-salesforce talks to the ``instance_url`` the sandbox's OAuth answer names
(``https://127.0.0.1:PORT``), directly (``NO_PROXY=127.0.0.1``); only HubSpot's pages pass
through the relay, whose CPU time the bench reports beside the extractor's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Upstream:
    """Where a routed host's traffic goes: ``tls_ca`` set means TLS to the upstream."""

    host: str
    port: int
    tls_ca: str | None = None


def make_certificate(directory: Path, names: list[str]) -> tuple[Path, Path]:
    """A self-signed certificate for ``names`` (also the CA file the extractor trusts)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "crmsync bench proxy")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "proxy-cert.pem", directory / "proxy-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class VendorProxy:
    """The proxy, on its own thread and event loop, at ``http://127.0.0.1:{port}``."""

    def __init__(self, routes: dict[str, Upstream], workdir: Path) -> None:
        self.routes = routes
        self.cert, key = make_certificate(workdir, sorted(routes))
        self._server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._server_tls.load_cert_chain(self.cert, key)
        self.port = 0
        self.connects: dict[str, int] = {}
        self.refused: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> VendorProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the bench proxy did not start")
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def cpu_seconds_now(self) -> float:
        """CPU time the proxy's thread has used so far (the relay's cost, which the bench
        reports beside the extractor's)."""
        ident = self._thread.ident
        if ident is None or not self._thread.is_alive():
            return 0.0
        return time.clock_gettime(time.pthread_getcpuclockid(ident))

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = int(server.sockets[0].getsockname()[1])
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.run_until_complete(server.wait_closed())
            self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            host = target.rsplit(":", 1)[0]
            upstream = self.routes.get(host)
            if method != "CONNECT" or upstream is None:
                self.refused.append(f"{method} {target}")
                writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
                return
            self.connects[host] = self.connects.get(host, 0) + 1
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await writer.start_tls(self._server_tls)
            client_tls = None
            if upstream.tls_ca is not None:
                client_tls = ssl.create_default_context(cafile=upstream.tls_ca)
            up_reader, up_writer = await asyncio.open_connection(
                upstream.host,
                upstream.port,
                ssl=client_tls,
                server_hostname=upstream.host if client_tls else None,
            )
            await asyncio.gather(
                _pump(reader, up_writer), _pump(up_reader, writer), return_exceptions=True
            )
        except (OSError, ValueError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while chunk := await source.read(262_144):
            sink.write(chunk)
            await sink.drain()
    finally:
        sink.close()
