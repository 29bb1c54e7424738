#!/usr/bin/env bash
# Fogmachine's two commands for a fresh Debian machine (run as root):
#
#   ./bootstrap.sh serve   set up, then run the server on the embedded defaults
#   ./bootstrap.sh test    set up, start what the tests need, run ruff and the whole suite
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

start_databases() {
    # The machine's MariaDB and PostgreSQL, when installed but stopped (a test may restart one).
    if command -v mariadbd >/dev/null && ! mariadb-admin -uroot -h127.0.0.1 ping >/dev/null 2>&1; then
        start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
    fi
    if command -v pg_ctlcluster >/dev/null && ! pg_isready -h 127.0.0.1 -q 2>/dev/null; then
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    fi
}

cmd_test() {
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
    say "pytest"
    set +e
    FM_RUN_DISRUPTIVE=1 "$PY" -m pytest -rs -p no:cacheprovider "$@"
    local rc=$?
    set -e
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
