"""The daemon entry behind ``fogmachined``: detach, pid file, log file, clean stop.

SIGTERM and SIGINT stop the server cleanly (the listening socket closes, the
adapters disconnect, the pid file is removed); SIGHUP reads virthosts.conf
again. A pid file naming a live
process makes a second start refuse instead of running twice.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from fogmachine import config as configmod
from fogmachine import logs
from fogmachine.errors import FogmachineError


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _claim_pidfile(path: Path) -> None:
    if path.exists():
        try:
            pid = int(path.read_text().strip() or 0)
        except ValueError:
            pid = 0
        if pid and _pid_alive(pid):
            raise SystemExit(f"fogmachined: already running as pid {pid} ({path})")
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{os.getpid()}\n")


def _detach(log_file: Path) -> None:
    """The classic double fork, so the daemon is not a session leader and has no terminal."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    os.chdir("/")
    os.umask(0o027)
    devnull = os.open(os.devnull, os.O_RDWR)
    out = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    os.dup2(devnull, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fogmachined", description="Run Fogmachine as a daemon.")
    parser.add_argument("--config", "-c", help="configuration file")
    parser.add_argument("--pidfile", help="pid file (default: DATA_DIR/fogmachined.pid)")
    parser.add_argument("--logfile", help="log file (default: DATA_DIR/fogmachined.log)")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--foreground", "-f", action="store_true", help="do not detach")
    args = parser.parse_args(argv)
    try:
        overrides = {"log_level": args.log_level} if args.log_level else {}
        config = configmod.load(args.config, **overrides)
    except FogmachineError as exc:
        print(f"fogmachined: error: {exc.message}", file=sys.stderr)
        return 2
    data_dir = Path(config.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    pidfile = Path(args.pidfile or data_dir / "fogmachined.pid").resolve()
    logfile = Path(args.logfile or data_dir / "fogmachined.log").resolve()
    if not args.foreground:
        _detach(logfile)
    _claim_pidfile(pidfile)
    logs.setup(config.log_level, filename=None if args.foreground else str(logfile))
    from fogmachine.app import serve

    try:
        asyncio.run(serve(config))
    except FogmachineError as exc:
        print(f"fogmachined: error: {exc.message}", file=sys.stderr)
        return 1
    finally:
        if pidfile.exists() and pidfile.read_text().strip() == str(os.getpid()):
            pidfile.unlink()
    return 0
