#!/usr/bin/env bash
# Loopback Cobbler 3.3 server for Fogmachine's integration tests.
#
# Usage: tests/infra/cobbler_server.sh install|start|stop|restart|status|reset|urls
#
#   install  virtualenv with cobbler==3.3.10 (--no-deps) + its runtime deps, data files copied to the
#            hard-coded places Cobbler reads (/etc/cobbler, /var/lib/cobbler, /var/www/cobbler, /srv/tftpboot,
#            /var/log/cobbler), loopback settings, user cobbler/cobbler.  Skips what is already done.
#   start    cobblerd -F (XML-RPC on 127.0.0.1:25151, hard-coded in cobblerd) and the svc WSGI app under
#            gunicorn on 127.0.0.1:$FM_COBBLER_SVC_PORT (default 25152).  No-op when already running.
#            Prints the two URLs (XML-RPC, svc base).
#   stop     stop both by PID (idempotent).
#   status   print state; exit 0 if both run, 3 otherwise.
#   reset    remove every system, profile, image and distro (over XML-RPC when running, by deleting the
#            serialized collections when stopped).  Templates/snippets are left alone.
#   urls     print the two URLs.
#
# Environment:
#   FM_TEST_STATE         base dir (default /var/tmp/fogmachine-test); venv in $FM_TEST_STATE/cobbler-venv,
#                         pids/logs in $FM_TEST_STATE/cobbler
#   FM_COBBLER_SVC_PORT   port of the svc app (default 25152)
#   FM_COBBLER_USER / FM_COBBLER_PASSWORD   credentials used by `reset` (default cobbler/cobbler)
#
# Cobbler reads hard-coded system paths, so there is ONE Cobbler per machine whatever FM_TEST_STATE says.
# Logs: $FM_TEST_STATE/cobbler/{cobblerd,svc}.log (stdout/stderr, svc access log) and /var/log/cobbler/cobbler.log
# (every XML-RPC call, load errors).  Subcommands serialise on $FM_TEST_STATE/cobbler/.lock.  If the pid
# files vanish (state dir wiped) while the daemons run, start/stop re-adopt the listeners on 25151/25152 when
# their command line shows this venv.  install also sets http_port to the svc port, so $http_server in
# templates is 127.0.0.1:25152.
set -euo pipefail

BASE="${FM_TEST_STATE:-/var/tmp/fogmachine-test}"
STATE="$BASE/cobbler"
VENV="$BASE/cobbler-venv"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
COBBLER_VERSION="3.3.10"
XMLRPC_PORT=25151                      # hard-coded in cobbler/cobblerd.py
SVC_PORT="${FM_COBBLER_SVC_PORT:-25152}"
XMLRPC_URL="http://127.0.0.1:${XMLRPC_PORT}/"
SVC_URL="http://127.0.0.1:${SVC_PORT}/cblr/svc/op/"
CB_USER="${FM_COBBLER_USER:-cobbler}"
CB_PASSWORD="${FM_COBBLER_PASSWORD:-cobbler}"
COLLECTIONS=/var/lib/cobbler/collections
COLLECTION_TYPES="distros profiles systems images repos menus mgmtclasses packages files"

log() { printf '[cobbler_server] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

mkdir -p "$STATE"

# Serialise concurrent invocations (e.g. pytest-xdist workers all calling `start`).
with_lock() {
    exec 9>"$STATE/.lock"
    flock -w 120 9 || die "could not take $STATE/.lock"
}

# ---------------------------------------------------------------- install

find_python311() {
    local c
    for c in python3 python3.11 "$HOME"/.pyenv/versions/3.11.*/bin/python3 /usr/bin/python3.11; do
        if command -v "$c" >/dev/null 2>&1 &&
            "$c" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
            command -v "$c"
            return 0
        fi
    done
    return 1
}

site_packages() {
    "$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'
}

install_venv() {
    if [[ -x "$VENV/bin/cobblerd" && -x "$VENV/bin/gunicorn" ]] &&
        "$VENV/bin/python" - "$COBBLER_VERSION" <<'EOF' 2>/dev/null; then
import sys
from importlib.metadata import version
assert version("cobbler") == sys.argv[1]
import Cheetah, distro, dns, magic, netaddr, yaml, requests, schema, gunicorn, psutil  # noqa
EOF
        log "venv ok: $VENV"
        return 0
    fi
    local py
    py="$(find_python311)" || die "no Python 3.11 found (Cheetah3 does not work on 3.13)"
    log "creating venv $VENV with $py"
    [[ -x "$VENV/bin/python" ]] || "$py" -m venv "$VENV"
    # cobbler's full dependency set fails (mod-wsgi needs apxs); pip warns about mod-wsgi/pymongo/python-ldap.
    "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps "cobbler==$COBBLER_VERSION"
    "$VENV/bin/pip" install -q --disable-pip-version-check \
        Cheetah3 distro dnspython file-magic netaddr pyyaml requests schema gunicorn psutil
}

install_apt() {
    command -v rsync >/dev/null 2>&1 && return 0
    log "installing rsync"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends rsync ||
        { apt-get update -q && apt-get install -y -q --no-install-recommends rsync; }
}

install_data() {
    local sp
    sp="$(site_packages)"
    [[ -f "$sp/etc/cobbler/settings.yaml" ]] || die "wheel data not found under $sp"
    # cp -n: never clobber what is there (templates/snippets written by tests, edited settings).
    mkdir -p /etc/cobbler /var/lib/cobbler /var/www/cobbler
    cp -rn "$sp/etc/cobbler/." /etc/cobbler/
    cp -rn "$sp/var/lib/cobbler/." /var/lib/cobbler/
    cp -rn "$sp/var/www/cobbler/." /var/www/cobbler/
    rm -rf /var/www/cobbler/svc/__pycache__
    local d
    for d in $COLLECTION_TYPES; do mkdir -p "$COLLECTIONS/$d"; done
    mkdir -p /var/lib/cobbler/loaders /var/lib/cobbler/jinja2 \
        /var/lib/cobbler/triggers/{add,delete,install,sync,change,task} \
        /var/lib/cobbler/triggers/sync/{pre,post} /var/lib/cobbler/triggers/install/{pre,post} \
        /var/log/cobbler/tasks /var/log/cobbler/anamon /var/log/cobbler/kicklog /var/log/cobbler/syslog \
        /var/www/cobbler/{distro_mirror,images,links,localmirror,pub,rendered,repo_mirror,repo_profile,repo_system} \
        /srv/tftpboot/{boot,etc,grub,images,images2,ppc,pxelinux.cfg,s390x} \
        /var/cache/cobbler/buildiso
    for d in distro image menu mgmtclass package profile repo system file; do
        mkdir -p /var/lib/cobbler/triggers/add/$d/{pre,post} /var/lib/cobbler/triggers/delete/$d/{pre,post}
    done
}

configure() {
    # Loopback settings: edit top-level keys in place (keeps the file's comments).
    "$VENV/bin/python" - /etc/cobbler/settings.yaml "$SVC_PORT" <<'EOF'
import re, sys
path, svc_port = sys.argv[1], sys.argv[2]
want = {
    "manage_dhcp": "false", "manage_dhcp_v4": "false", "manage_dhcp_v6": "false",
    "manage_dns": "false", "manage_tftpd": "false", "manage_rsync": "false",
    "server": "127.0.0.1", "next_server_v4": "127.0.0.1", "anamon_enabled": "false",
    "auto_migrate_settings": "false",
    # $http_server in templates = server:http_port -> point it at the svc app.
    "http_port": svc_port,
}
text = open(path).read()
new = text
for key, value in want.items():
    new, n = re.subn(r"(?m)^%s:.*$" % re.escape(key), "%s: %s" % (key, value), new)
    if n != 1:
        sys.exit("settings.yaml: expected one top-level %r, found %d" % (key, n))
if new != text:
    open(path, "w").write(new)
    print("settings.yaml updated", file=sys.stderr)
EOF
    local want_modules
    want_modules="$(cat <<'EOF'
# Written by Fogmachine's tests/infra/cobbler_server.sh (loopback test server).
[authentication]
module = authentication.configfile
hash_algorithm = sha3_512

[authorization]
module = authorization.allowall

[serializers]
module = serializers.file

[dns]
module = managers.bind

[dhcp]
module = managers.isc

[tftpd]
module = managers.in_tftpd
EOF
)"
    if [[ "$(cat /etc/cobbler/modules.conf 2>/dev/null)" != "$want_modules" ]]; then
        printf '%s\n' "$want_modules" >/etc/cobbler/modules.conf
        log "modules.conf written"
    fi
    local hash line
    hash="$(printf '%s' "$CB_PASSWORD" | "$VENV/bin/python" -c 'import hashlib,sys; print(hashlib.sha3_512(sys.stdin.buffer.read()).hexdigest())')"
    line="$CB_USER:Cobbler:$hash"
    if ! grep -qxF "$line" /etc/cobbler/users.digest 2>/dev/null; then
        { grep -v "^$CB_USER:" /etc/cobbler/users.digest 2>/dev/null || true; echo "$line"; } >/etc/cobbler/users.digest.new
        mv /etc/cobbler/users.digest.new /etc/cobbler/users.digest
        log "users.digest: user $CB_USER set"
    fi
}

cmd_install() {
    with_lock
    install_venv
    install_apt
    install_data
    configure
    log "install done (cobbler $COBBLER_VERSION, venv $VENV)"
}

# ---------------------------------------------------------------- processes

# pid_alive NAME -> prints the pid when $STATE/NAME.pid names a live process of ours
pid_alive() {
    local f="$STATE/$1.pid" pid
    [[ -s "$f" ]] || return 1
    pid="$(cat "$f")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    alive "$pid" || return 1
    # guard against PID reuse: the process must be one we started
    { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -q -- "$VENV/bin/" || return 1
    echo "$pid"
}

# alive PID: process exists and is not a zombie (PID 1 of a container may never reap our orphans)
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    local st
    st="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)"
    [[ -n "$st" && "$st" != Z ]]
}

# adopt NAME PORT MARKER: when the pid file is gone (e.g. someone wiped $FM_TEST_STATE) but a process of ours
# still listens on PORT, write its pid file again.  Only a listener whose command line holds "$VENV/bin/" and
# MARKER qualifies; for gunicorn the master (whose parent is not one of the listeners) is chosen.
adopt() {
    local name="$1" port="$2" marker="$3" pids p ppid cmd
    command -v ss >/dev/null 2>&1 || return 1
    pids="$(ss -Hltnp "sport = :$port" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u)"
    for p in $pids; do
        cmd="$({ tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null || true)"
        [[ "$cmd" == *"$VENV/bin/"* && "$cmd" == *"$marker"* ]] || continue
        ppid="$(awk '{print $4}' "/proc/$p/stat" 2>/dev/null || true)"
        grep -qx -- "$ppid" <<<"$pids" && continue
        echo "$p" >"$STATE/$name.pid"
        log "adopted running $name (pid $p) that had lost its pid file"
        return 0
    done
    return 1
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

xmlrpc_ok() {
    "$VENV/bin/python" - "$XMLRPC_URL" <<'EOF' 2>/dev/null
import sys, xmlrpc.client
xmlrpc.client.ServerProxy(sys.argv[1]).version()
EOF
}

svc_ok() {
    # op/settings answers with cobbler's settings as JSON, i.e. svc app + its XML-RPC backend both work.
    curl -fsS -m 5 -o /dev/null "${SVC_URL}settings" 2>/dev/null
}

wait_for() { # wait_for SECONDS PIDNAME CHECK
    local deadline=$((SECONDS + $1)) name="$2"
    shift 2
    until "$@"; do
        pid_alive "$name" >/dev/null || { log "$name died; last log lines:"; tail -n 30 "$STATE/$name.log" >&2; return 1; }
        ((SECONDS < deadline)) || { log "$name not ready after timeout; last log lines:"; tail -n 30 "$STATE/$name.log" >&2; return 1; }
        sleep 0.1
    done
}

start_cobblerd() {
    if pid_alive cobblerd >/dev/null || adopt cobblerd "$XMLRPC_PORT" bin/cobblerd; then
        log "cobblerd already running (pid $(cat "$STATE/cobblerd.pid"))"
    else
        port_busy "$XMLRPC_PORT" && die "127.0.0.1:$XMLRPC_PORT is in use by a process this script did not start"
        rm -f /var/lib/cobbler/web.ss  # regenerated by cobblerd; stale one is harmless but keep it tidy
        (cd / && exec setsid "$VENV/bin/cobblerd" -F </dev/null >>"$STATE/cobblerd.log" 2>&1 9>&-) &
        echo $! >"$STATE/cobblerd.pid"
        log "cobblerd started (pid $!)"
    fi
}

start_svc() {
    if pid_alive svc >/dev/null || adopt svc "$SVC_PORT" cobbler_svc_wsgi; then
        log "svc app already running (pid $(cat "$STATE/svc.pid"))"
    else
        port_busy "$SVC_PORT" && die "127.0.0.1:$SVC_PORT is in use by a process this script did not start"
        local extra=()
        "$VENV/bin/gunicorn" --help 2>/dev/null | grep -q -- '--no-control-socket' && extra+=(--no-control-socket)
        (cd / && exec setsid "$VENV/bin/gunicorn" "${extra[@]}" \
            --bind "127.0.0.1:$SVC_PORT" --workers 2 --threads 4 --worker-class gthread --timeout 60 --graceful-timeout 5 \
            --chdir "$HERE" --access-logfile - --error-logfile - \
            cobbler_svc_wsgi:application </dev/null >>"$STATE/svc.log" 2>&1 9>&-) &
        echo $! >"$STATE/svc.pid"
        log "svc app started (pid $!)"
    fi
}

cmd_start() {
    with_lock
    [[ -x "$VENV/bin/cobblerd" && -f /etc/cobbler/settings.yaml ]] || die "not installed; run: $0 install"
    local t0=$EPOCHREALTIME
    start_cobblerd
    start_svc  # boots in parallel with cobblerd; it only talks to cobblerd per request
    wait_for 60 cobblerd xmlrpc_ok
    wait_for 60 svc svc_ok
    log "ready ($(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }') s)"
    cmd_urls
}

stop_one() {
    local name="$1" pid i children child
    if pid="$(pid_alive "$name")"; then
        children="$(ps -o pid= --ppid "$pid" 2>/dev/null || true)"
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            alive "$pid" || break
            sleep 0.1
        done
        if alive "$pid"; then
            log "$name (pid $pid) ignored SIGTERM, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        # gunicorn workers are the master's children; make sure none outlives it
        for child in $children; do
            if { tr '\0' ' ' <"/proc/$child/cmdline"; } 2>/dev/null | grep -q -- "$VENV/bin/"; then
                kill -KILL "$child" 2>/dev/null || true
            fi
        done
        log "$name stopped (pid $pid)"
    fi
    rm -f "$STATE/$name.pid"
}

cmd_stop() {
    with_lock
    pid_alive svc >/dev/null || adopt svc "$SVC_PORT" cobbler_svc_wsgi || true
    pid_alive cobblerd >/dev/null || adopt cobblerd "$XMLRPC_PORT" bin/cobblerd || true
    stop_one svc
    stop_one cobblerd
}

cmd_status() {
    local rc=0 pid
    if pid="$(pid_alive cobblerd)"; then
        if xmlrpc_ok; then echo "cobblerd: running (pid $pid) $XMLRPC_URL"; else echo "cobblerd: running (pid $pid) but not answering"; rc=3; fi
    elif port_busy "$XMLRPC_PORT"; then
        echo "cobblerd: 127.0.0.1:$XMLRPC_PORT busy but no pid file (start/stop adopt it if it is ours)"; rc=3
    else
        echo "cobblerd: stopped"; rc=3
    fi
    if pid="$(pid_alive svc)"; then
        if svc_ok; then echo "svc:      running (pid $pid) $SVC_URL"; else echo "svc:      running (pid $pid) but not answering"; rc=3; fi
    elif port_busy "$SVC_PORT"; then
        echo "svc:      127.0.0.1:$SVC_PORT busy but no pid file (start/stop adopt it if it is ours)"; rc=3
    else
        echo "svc:      stopped"; rc=3
    fi
    return $rc
}

cmd_urls() {
    echo "COBBLER_XMLRPC_URL=$XMLRPC_URL"
    echo "COBBLER_SVC_URL=$SVC_URL"
}

cmd_reset() {
    with_lock
    if pid_alive cobblerd >/dev/null; then
        "$VENV/bin/python" - "$XMLRPC_URL" "$CB_USER" "$CB_PASSWORD" <<'EOF'
import sys, xmlrpc.client
url, user, password = sys.argv[1:4]
s = xmlrpc.client.ServerProxy(url, allow_none=True)
tok = s.login(user, password)
removed = 0
# children first; recursive=True also drops dependants, so tolerate "not found" on later names.
for what in ("system", "profile", "image", "distro"):
    for _ in range(5):  # sub-profiles may appear again under a removed parent's recursion order
        names = s.get_item_names(what)
        if not names:
            break
        for name in names:
            try:
                s.remove_item(what, name, tok, True)
                removed += 1
            except xmlrpc.client.Fault as exc:
                if s.get_item(what, name) != "~":
                    raise SystemExit("remove %s %s: %s" % (what, name, exc.faultString))
left = {w: s.get_item_names(w) for w in ("system", "profile", "image", "distro")}
if any(left.values()):
    raise SystemExit("reset incomplete: %r" % left)
print("[cobbler_server] reset: %d objects removed over XML-RPC" % removed, file=sys.stderr)
EOF
        # Objects cobblerd could not load at start (e.g. a distro whose kernel/initrd file had vanished, with
        # its profiles and systems) are skipped with an ERROR in the log but stay on disk and would come back
        # at a later start: delete those ghosts too (nothing of these types is loaded any more).
        local d ghosts=0
        for d in systems profiles images distros; do
            ghosts=$((ghosts + $(find "$COLLECTIONS/$d" -maxdepth 1 -name '*.json' -print -delete 2>/dev/null | wc -l)))
        done
        ((ghosts == 0)) || log "reset: also deleted $ghosts unloaded (ghost) object files"
    else
        local d
        for d in systems profiles images distros; do
            find "$COLLECTIONS/$d" -maxdepth 1 -name '*.json' -delete 2>/dev/null || true
        done
        log "reset: serialized systems/profiles/images/distros deleted (server stopped)"
    fi
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_stop; cmd_start ;;
    status) cmd_status ;;
    reset) cmd_reset ;;
    urls) cmd_urls ;;
    *) echo "usage: $0 install|start|stop|restart|status|reset|urls" >&2; exit 2 ;;
esac
