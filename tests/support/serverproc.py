"""Fogmachine servers as separate processes, for the tests that kill, restart or pair them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Reply:
    code: int
    body: Any
    seconds: float


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    port: int
    conf: Path
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(self, path: str, *, method: str = "GET", body: Any = None, token: str | None = None,
                timeout: float = 30) -> Reply:
        """A blocking request (run it in a thread from async tests); never raises on HTTP errors."""
        data = json.dumps(body).encode() if body is not None else (b"" if method != "GET" else None)
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=headers)
        started = time.monotonic()
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw, code = resp.read(), resp.status
        except urllib.error.HTTPError as exc:
            raw, code = exc.read(), exc.code
        text = raw.decode() if raw else ""
        try:
            parsed: Any = json.loads(text) if text else None
        except ValueError:
            parsed = text
        return Reply(code, parsed, time.monotonic() - started)

    def wait_listening(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()[-4000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"server not listening after {timeout} s:\n{self.log.read_text()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()


def spawn(directory: Path, name: str, settings: dict[str, str], port: int | None = None) -> ServerProcess:
    """Start ``fogmachine serve`` with a configuration file made of ``settings``."""
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    conf = directory / f"{name}.conf"
    lines = [f"{key} = {value}" for key, value in {"listen_port": str(port), **settings}.items()]
    conf.write_text("[fogmachine]\n" + "\n".join(lines) + "\n")
    log = directory / f"{name}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOGMACHINE_")}
    env["PYTHONPATH"] = str(ROOT)
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "fogmachine.cli", "--config", str(conf), "serve"],
                                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=directory)
    server = ServerProcess(proc, port, conf, log)
    server.wait_listening()
    return server
