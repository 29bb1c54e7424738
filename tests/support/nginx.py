"""Debian's nginx as a real reverse proxy on loopback, in front of a Fogmachine server.

It listens on two free ports of 127.0.0.1, plain HTTP and HTTPS (a throw-away
self-signed certificate), and passes requests on, WebSocket upgrades included,
exactly as the sample site ``docs/nginx-fogmachine.conf`` does: its marked
blocks are used as they are, with the test server as the upstream, so the
sample is what the tests prove. A missing nginx is a
failure, not a skip: ``./bootstrap.sh test`` installs it (package nginx-light).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.serverproc import ROOT, free_port

NGINX = "/usr/sbin/nginx"

SAMPLE = ROOT / "docs" / "nginx-fogmachine.conf"
SAMPLE_UPSTREAM = "http://127.0.0.1:8080"

CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
{http}
    server {{
        listen 127.0.0.1:{http_port};
        listen 127.0.0.1:{https_port} ssl;
        ssl_certificate {dir}/cert.pem;
        ssl_certificate_key {dir}/key.pem;
{location}
    }}
}}
"""


def sample_block(name: str, upstream_port: int) -> str:
    """The sample site's block between ``# BEGIN name`` and ``# END name``, proxying to ``upstream_port``."""
    text = SAMPLE.read_text()
    begin, end = f"# BEGIN {name}\n", f"# END {name}"
    start = text.index(begin) + len(begin)
    block = text[start:text.index(end, start)]
    assert SAMPLE_UPSTREAM in block or name != "fogmachine-location", f"{SAMPLE} lost its proxy_pass"
    return block.replace(SAMPLE_UPSTREAM, f"http://127.0.0.1:{upstream_port}")


@dataclass
class Nginx:
    http_port: int
    https_port: int
    directory: Path

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"


def _wait_listening(proc: subprocess.Popen[bytes], ports: tuple[int, ...], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    for port in ports:
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"nginx exited with {proc.returncode}: {log.read_text() if log.exists() else ''}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"nginx not listening on {port} after {timeout} s") from None
                time.sleep(0.05)


@contextlib.contextmanager
def reverse_proxy(directory: Path, upstream_port: int) -> Iterator[Nginx]:
    """nginx in front of 127.0.0.1:``upstream_port``; stopped (by its own pid) when the block ends."""
    if not shutil.which(NGINX):
        pytest.fail(f"{NGINX} is missing: apt-get install nginx-light (./bootstrap.sh test installs it)")
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem")],
                   check=True, capture_output=True)
    proxy = Nginx(free_port(), free_port(), directory)
    conf = directory / "nginx.conf"
    conf.write_text(CONF.format(dir=directory, http_port=proxy.http_port, https_port=proxy.https_port,
                                http=sample_block("fogmachine-http", upstream_port),
                                location=sample_block("fogmachine-location", upstream_port)))
    log = directory / "error.log"
    proc = subprocess.Popen([NGINX, "-p", str(directory), "-c", str(conf), "-e", str(log)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        _wait_listening(proc, (proxy.http_port, proxy.https_port), log)
        yield proxy
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
