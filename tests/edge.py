"""Real nginx in front of the app for tests: the production site config, rendered with free ports
and a throwaway certificate authority, run as a child process (``nginx -p DIR -c CONF``)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import shutil
import socket
import ssl
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from naboom.deploy.nginx import EdgeSettings, write_config
from tests.support import free_port, wait_for_sync


def nginx_binary() -> str:
    """Debian's nginx (``/usr/sbin`` is not on every user's PATH)."""
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    assert found, "nginx is missing: apt-get install nginx (scripts/test does)"
    return found


@dataclass(frozen=True)
class EdgeCertificates:
    """A CA and a server certificate it signed for 127.0.0.1 and localhost (PEM files)."""

    ca: Path
    cert: Path
    key: Path

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts only the test CA."""
        return ssl.create_default_context(cafile=str(self.ca))


def make_certificates(directory: Path) -> EdgeCertificates:
    """Write a fresh CA and a localhost server certificate into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "naboom test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = EdgeCertificates(ca=directory / "ca.pem", cert=directory / "server.pem", key=directory / "server.key")
    paths.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    paths.key.chmod(0o600)
    return paths


class NginxEdge:
    """The rendered production site on free loopback ports, as a context manager.

    ``check()`` runs ``nginx -t`` (also done on entry); inside the block nginx serves
    ``https_url`` and redirects from ``http_url``.
    """

    def __init__(
        self,
        directory: Path,
        *,
        app_port: int,
        mqtt_ws_port: int,
        monitor_root: Path,
        certificates: EdgeCertificates | None = None,
        admin_allow: Sequence[str] = ("127.0.0.1",),
        ping_rate: str = "5r/s",
        ping_burst: int = 20,
    ) -> None:
        certificates = certificates or make_certificates(directory / "tls")
        settings = EdgeSettings(
            server_name="localhost 127.0.0.1",
            tls_cert=str(certificates.cert),
            tls_key=str(certificates.key),
            app_upstream=f"127.0.0.1:{app_port}",
            mqtt_ws_upstream=f"127.0.0.1:{mqtt_ws_port}",
            monitor_root=str(monitor_root),
            admin_allow=tuple(admin_allow),
            ping_rate=ping_rate,
            ping_burst=ping_burst,
        )
        self._setup(directory, certificates, settings)

    def _setup(self, directory: Path, certificates: EdgeCertificates, settings: EdgeSettings) -> None:
        """Give ``settings`` fresh ports and paths inside ``directory`` and write the config there."""
        self.directory = directory
        self.certificates = certificates
        self.http_port, self.https_port = free_port(), free_port()
        self.settings = dataclasses.replace(
            settings,
            http_listen=f"127.0.0.1:{self.http_port}",
            https_listen=f"127.0.0.1:{self.https_port}",
            acme_root=str(directory / "acme"),
            access_log=str(directory / "logs" / "access.log"),
        )
        self.conf = write_config(directory, self.settings)
        self.proc: subprocess.Popen[bytes] | None = None

    def with_settings(self, directory: Path, **changes: Any) -> NginxEdge:
        """Another edge on the same upstreams and certificates, in ``directory``, with some settings changed."""
        edge = NginxEdge.__new__(NginxEdge)
        edge._setup(directory, self.certificates, dataclasses.replace(self.settings, **changes))
        return edge

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def error_log(self) -> Path:
        return self.directory / "logs" / "error.log"

    def _args(self, *extra: str) -> list[str]:
        # -e: nginx opens its compiled-in error log before reading the config; keep it in the prefix.
        return [nginx_binary(), "-p", str(self.directory), "-e", str(self.error_log), "-c", str(self.conf), *extra]

    def check(self) -> subprocess.CompletedProcess[str]:
        """``nginx -t`` on the rendered config (its output is on stderr)."""
        return subprocess.run(self._args("-t"), capture_output=True, text=True, timeout=30)

    def start(self) -> None:
        checked = self.check()
        assert checked.returncode == 0, f"nginx -t failed:\n{checked.stderr}"
        log = (self.directory / "logs" / "nginx.out").open("ab")
        self.proc = subprocess.Popen(self._args("-g", "daemon off;"), stdout=log, stderr=subprocess.STDOUT)

        def listening() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited with {self.proc.returncode}: {self.error_log.read_text()}")
            return all(_accepts(port) for port in (self.http_port, self.https_port))

        try:
            wait_for_sync(listening, timeout=20, what="nginx to listen")
        except BaseException:
            self.stop()  # __exit__ never runs when __enter__ fails
            raise

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: nginx's fast shutdown, open streams closed at once
            self.proc.wait(timeout=20)
        self.proc = None

    def __enter__(self) -> NginxEdge:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
