"""The API over HTTPS (`api.tls`): a self-signed certificate made here with openssl, the real
server (uvicorn in its thread), a client (httpx) that trusts only that certificate; and clear
errors, naming the field, for certificate files that are missing, unreadable or wrong."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from ringfence.api import StoreSource, create_app
from ringfence.api.server import ApiServer, tls_files
from ringfence.config import parse_cluster
from ringfence.config.services import ApiTLS
from ringfence.errors import ConfigError
from ringfence.store.sqlite import SqliteStore

CLUSTER = """\
name: tlstest
networks: [{name: ring0, role: heartbeat}]
hosts: [{name: host1, cpus: 4, memory: 8GiB}, {name: host2, cpus: 4, memory: 8GiB}]
vms: [{name: vm1, cpus: 1, memory: 1GiB, host: host1}]
"""
OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command")


def self_signed(directory: Path, name: str = "api") -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key (so it is its own CA)."""
    assert OPENSSL is not None
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    key.chmod(0o600)
    return cert, key


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    with SqliteStore(str(tmp_path / "store.db")) as opened:
        yield opened


@needs_openssl
def test_the_api_answers_over_https_to_a_client_that_trusts_its_certificate(
        tmp_path: Path, store: SqliteStore) -> None:
    cert, key = self_signed(tmp_path)
    config = parse_cluster(yaml.safe_load(CLUSTER), file="cluster.yaml")
    certfile, keyfile = tls_files(ApiTLS(cert_file=str(cert), key_file=str(key)))
    server = ApiServer(create_app(StoreSource(config, store)), "127.0.0.1", 0,
                       certfile=certfile, keyfile=keyfile)
    server.start()
    try:
        assert server.url.startswith("https://127.0.0.1:")
        trusted = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=server.url, verify=trusted, timeout=10) as client:
            cluster = client.get("/api/v1/cluster")
            assert cluster.status_code == 200
            assert cluster.json()["name"] == "tlstest"
            assert client.get("/metrics").status_code == 200
        with (httpx.Client(base_url=server.url, timeout=10) as untrusting,
              pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED")):
            untrusting.get("/api/v1/cluster")  # the system's CAs do not know it
        plain = server.url.replace("https://", "http://")
        with httpx.Client(timeout=10) as client, pytest.raises(httpx.HTTPError):
            client.get(f"{plain}/api/v1/cluster")  # no plain HTTP beside HTTPS
    finally:
        server.stop()


def test_a_missing_certificate_is_a_config_error_naming_the_field(tmp_path: Path) -> None:
    key = tmp_path / "api.key"
    key.write_text("not used")
    key.chmod(0o600)
    missing = tmp_path / "nowhere.crt"
    with pytest.raises(ConfigError, match=r"api\.tls\.cert_file.*can not read .*nowhere\.crt: "
                                          r"No such file or directory"):
        tls_files(ApiTLS(cert_file=str(missing), key_file=str(key)))
    with pytest.raises(ConfigError, match=r"api\.tls\.key_file.*key_file is missing"):
        tls_files(ApiTLS(cert_file=str(missing)))
    assert tls_files(None) == (None, None)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_certificate_is_a_config_error(tmp_path: Path) -> None:
    cert = tmp_path / "api.crt"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    cert.chmod(0)
    with pytest.raises(ConfigError, match=r"api\.tls\.cert_file.*Permission denied"):
        tls_files(ApiTLS(cert_file=str(cert), key_file=str(cert)))


@needs_openssl
def test_a_certificate_that_does_not_load_or_a_key_of_another_is_a_config_error(
        tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path, "one")
    _, other_key = self_signed(tmp_path, "two")
    with pytest.raises(ConfigError, match=r"api\.tls\.key_file.*do not load"):
        tls_files(ApiTLS(cert_file=str(cert), key_file=str(other_key)))
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("this is no certificate\n")
    with pytest.raises(ConfigError, match=r"api\.tls\.cert_file.*do not load"):
        tls_files(ApiTLS(cert_file=str(garbage), key_file=str(other_key)))


def test_the_agent_refuses_to_start_with_a_missing_certificate(tmp_path: Path) -> None:
    """Before anything starts: no socket, no watchdog, no state directory; exit 2."""
    import sys

    key = tmp_path / "cluster.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    tls_key = tmp_path / "api.key"
    tls_key.write_text("unused")
    tls_key.chmod(0o600)
    cluster = yaml.safe_load(CLUSTER)
    cluster.update(
        key_file=str(key),
        store={"kind": "sqlite", "path": str(tmp_path / "store.db"), "bootstrap": "host1"},
        api={"listen": "127.0.0.1:45998",
             "tls": {"cert_file": str(tmp_path / "nowhere.crt"), "key_file": str(tls_key)}})
    cluster["networks"][0]["port"] = 45999
    for index, host in enumerate(cluster["hosts"]):
        host.update(hypervisor="process",
                    interfaces={"ring0": {"address": f"127.0.0.{index + 1}"}})
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump(cluster))
    done = subprocess.run([sys.executable, "-m", "ringfence.cli", "agent", "--config",
                           str(tmp_path / "cluster.yaml"), "--host", "host1", "--state-dir",
                           str(tmp_path / "state"), "--watchdog", "process", "--disk-file",
                           str(tmp_path / "disk")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "api.tls.cert_file: can not read" in done.stderr and "nowhere.crt" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "state").exists()
