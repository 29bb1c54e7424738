"""fogmachined detaches, writes its pid file and log, reads virthosts.conf again on SIGHUP, stops on SIGTERM."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_log(logfile: Path, text: str, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in logfile.read_text():
            return True
        time.sleep(0.1)
    return False


def test_daemon_pidfile_log_sighup_and_sigterm(tmp_path):
    port = free_port()
    (tmp_path / "virthosts.conf").write_text("demo, test:///default, test\n")
    conf = tmp_path / "fm.conf"
    conf.write_text(f"[fogmachine]\ndata_dir = data\nlisten_port = {port}\n")
    pidfile, logfile = tmp_path / "fm.pid", tmp_path / "fm.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOGMACHINE_")}
    r = subprocess.run([sys.executable, str(ROOT / "fogmachined"), "--config", str(conf), "--pidfile", str(pidfile),
                        "--logfile", str(logfile)], env=env, timeout=30, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 30
    body = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/version", timeout=2) as resp:
                body = json.load(resp)
                break
        except OSError:
            time.sleep(0.2)
    assert body is not None, logfile.read_text() if logfile.exists() else "no log"
    pid = int(pidfile.read_text())
    # a second start refuses while the first runs
    r2 = subprocess.run([sys.executable, str(ROOT / "fogmachined"), "--config", str(conf), "--pidfile",
                         str(pidfile), "--logfile", str(logfile), "--foreground"], env=env, timeout=30,
                        capture_output=True, text=True)
    assert r2.returncode != 0 and "already running" in r2.stderr
    # SIGHUP reads virthosts.conf again: a malformed file changes nothing, a good one adds its host
    (tmp_path / "virthosts.conf").write_text("demo, test:///default, test\nbroken line\n")
    os.kill(pid, signal.SIGHUP)
    assert wait_for_log(logfile, "hosts not reloaded")
    (tmp_path / "virthosts.conf").write_text("demo, test:///default, test\ndemo2, test:///default, test\n")
    os.kill(pid, signal.SIGHUP)
    assert wait_for_log(logfile, "host demo2 is watched from now on")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/version", timeout=2) as resp:
        assert resp.status == 200
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and pidfile.exists():
        time.sleep(0.1)
    assert not pidfile.exists()
    log = logfile.read_text()
    assert "Fogmachine listening" in log and "Fogmachine stopped" in log
