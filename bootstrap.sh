#!/usr/bin/env bash
# Fogmachine's two commands for a fresh Debian machine (run as root):
#
#   ./bootstrap.sh serve   set up, then run the server on the embedded defaults
#   ./bootstrap.sh test    set up, start what the tests need, run ruff, mypy and the whole suite
#
# Both are idempotent: a second run skips every step already done.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"
VENV="${FOGMACHINE_VENV:-$HERE/.venv}"
PY="$VENV/bin/python"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

apt_install() {
    # Install only the Debian packages that are missing; update the lists once, if needed.
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        say "installing Debian packages: ${missing[*]}"
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
            apt-get update -q >/dev/null
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
        fi
    fi
}

python_bin() {
    for candidate in python3.11 python3.12 python3; do
        if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
            command -v "$candidate"; return
        fi
    done
    echo "Python 3.11 or newer is needed" >&2; exit 1
}

setup_venv() {
    local extras="$1"
    # libvirt-python and mysqlclient build against these headers.
    apt_install libvirt-dev libmariadb-dev pkg-config gcc
    if [ ! -x "$PY" ]; then
        say "creating the virtual environment $VENV"
        "$(python_bin)" -m venv "$VENV"
    fi
    local stamp="$VENV/.fogmachine-$extras"
    local want
    want="$(cat pyproject.toml | sha256sum | cut -c1-16)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        say "installing Fogmachine and its Python dependencies ($extras)"
        "$PY" -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
        "$PY" -m pip install -q -e ".[$extras]" 2>&1 | grep -v '^WARNING: Location' || true
        "$PY" -c 'import fogmachine, libvirt, sqlalchemy, tornado' # fail loudly if the install did not work
        echo "$want" > "$stamp"
    fi
}

cmd_serve() {
    setup_venv "mysql,postgres"
    say "starting Fogmachine; open http://127.0.0.1:8888/ (Ctrl-C stops it)"
    exec "$PY" main.py "$@"
}

wait_until() {
    # wait_until SECONDS WHAT CMD...: run CMD until it succeeds; fail with a clear message after SECONDS.
    local limit="$1" what="$2" t0; shift 2
    t0="$(date +%s)"
    until "$@" >/dev/null 2>&1; do
        if [ $(( $(date +%s) - t0 )) -ge "$limit" ]; then
            echo "ERROR: $what did not answer within ${limit} s ($*): the tests need it" >&2
            return 1
        fi
        sleep 0.5
    done
}

start_databases() {
    # The machine's MariaDB and PostgreSQL, started when stopped (a test may restart one). Each must answer:
    # a missing database is a failure of the test command, never a reason to skip its tests.
    local limit="${FM_DB_START_TIMEOUT:-60}"
    if ! command -v mariadbd >/dev/null || ! command -v mariadb-admin >/dev/null; then
        echo "ERROR: MariaDB is not installed (apt-get install mariadb-server): the tests need it" >&2; return 1
    fi
    if ! command -v pg_ctlcluster >/dev/null || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
        echo "ERROR: PostgreSQL is not installed (apt-get install postgresql): the tests need it" >&2; return 1
    fi
    if ! mariadb-admin -uroot -h127.0.0.1 ping >/dev/null 2>&1; then
        say "starting MariaDB"
        start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
    fi
    if ! pg_isready -h 127.0.0.1 -q 2>/dev/null; then
        say "starting PostgreSQL"
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
    fi
    wait_until "$limit" "MariaDB on 127.0.0.1:3306" mariadb-admin -uroot -h127.0.0.1 ping
    wait_until "$limit" "PostgreSQL on 127.0.0.1:5432" pg_isready -h 127.0.0.1 -q
}

cmd_test() {
    if [ -n "${FM_ALLOW_MISSING:-}" ]; then
        # The test command starts every real part; letting one be missing is for a direct pytest run only.
        say "ignoring FM_ALLOW_MISSING=$FM_ALLOW_MISSING: the test command never skips a missing real part"
        unset FM_ALLOW_MISSING
    fi
    setup_venv "mysql,postgres,test"
    apt_install chromium wrk nginx-light
    start_databases
    bash tests/infra/libvirt_hosts.sh install
    bash tests/infra/tiny_guest.sh build
    bash tests/infra/cobbler_server.sh install
    trap 'bash tests/infra/cobbler_server.sh stop || true; bash tests/infra/libvirt_hosts.sh stop || true' EXIT
    bash tests/infra/libvirt_hosts.sh start
    bash tests/infra/cobbler_server.sh start
    say "ruff"
    "$VENV/bin/ruff" check .
    say "mypy --strict fogmachine/"
    "$VENV/bin/mypy"
    local rc
    set +e
    if [ "$#" -gt 0 ]; then
        say "pytest $*"
        run_pytest "$@"; rc=$?
    else
        # The suite in two passes: first everything that shares the services safely, spread over
        # FM_TEST_WORKERS workers (the Cobbler and real-host tests together in one of them, tests/conftest.py);
        # then, alone, the tests that stop a shared service (MariaDB, Cobbler, a libvirtd).
        local workers="${FM_TEST_WORKERS:-4}"
        say "pytest, all but the disruptive tests, on $workers workers"
        run_pytest -n "$workers" --dist loadgroup -m "not disruptive"; rc=$?
        say "pytest, the disruptive tests, one at a time"
        run_pytest -m disruptive; local rc2=$?
        [ "$rc" -ne 0 ] || rc=$rc2
    fi
    set -e
    return "$rc"
}

run_pytest() {
    FM_RUN_DISRUPTIVE=1 "$PY" -m pytest -rs -p no:cacheprovider "$@"
    local rc=$?
    if [ "$rc" -eq 5 ]; then
        echo "pytest collected no tests: that is a failure" >&2
        return 1
    fi
    return "$rc"
}

case "${1:-}" in
    serve) shift; cmd_serve "$@" ;;
    test) shift; cmd_test "$@" ;;
    *) echo "usage: $0 serve|test [args...]" >&2; exit 2 ;;
esac
