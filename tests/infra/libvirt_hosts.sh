#!/usr/bin/env bash
# Two independent libvirtd+QEMU "hosts" on one machine, for Fogmachine's tests.
#
#   host 1: libvirtd in the root mount namespace, qemu+tcp://127.0.0.1/system
#   host 2: libvirtd under `unshare --mount` with private copies of
#           /etc/libvirt /run/libvirt /var/lib/libvirt /var/cache/libvirt
#           /var/log/libvirt, qemu+tcp://127.0.0.2/system
#
# Usage: libvirt_hosts.sh install|start|stop|status|start-host N|stop-host N|uris
#
# No systemd. State lives under $FM_TEST_STATE (default /var/tmp/fogmachine-test).
# Every subcommand is idempotent.
set -euo pipefail

STATE="${FM_TEST_STATE:-/var/tmp/fogmachine-test}"
PORT=16509
START_TIMEOUT="${FM_LIBVIRT_START_TIMEOUT:-60}"
# qemu-utils: libvirt runs qemu-img to make qcow2 volumes and overlays in a storage pool.
PACKAGES=(libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils busybox-static cpio)
HOSTS=(1 2)

log() { echo "libvirt_hosts: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

host_addr() { echo "127.0.0.$1"; }
host_uri() { echo "qemu+tcp://$(host_addr "$1")/system"; }
host_dir() { echo "$STATE/host$1"; }
pid_file() { echo "$(host_dir "$1")/libvirtd.pid"; }
# Where host N's /run/libvirt really is, seen from the root mount namespace.
run_dir() { if [ "$1" = 1 ]; then echo /run/libvirt; else echo "$(host_dir "$1")/run"; fi; }

check_host_arg() {
    case "${1:-}" in 1|2) ;; *) die "host must be 1 or 2, got '${1:-}'";; esac
}

# ---------------------------------------------------------------- install

ensure_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Replace our managed block in a conf file; comment out conflicting keys elsewhere.
# usage: set_conf_block FILE 'key = value' ...
set_conf_block() {
    local file="$1"; shift
    local tmp kv key
    tmp="$(mktemp)"
    [ -f "$file" ] && cat "$file" >"$tmp"
    sed -i '/^# BEGIN fogmachine-test/,/^# END fogmachine-test/d' "$tmp"
    for kv in "$@"; do
        key="${kv%% *}"
        sed -i "s/^[[:space:]]*${key}[[:space:]]*=/#&/" "$tmp"
    done
    {
        echo "# BEGIN fogmachine-test (managed by tests/infra/libvirt_hosts.sh)"
        printf '%s\n' "$@"
        echo "# END fogmachine-test"
    } >>"$tmp"
    if ! cmp -s "$tmp" "$file" 2>/dev/null; then
        mkdir -p "$(dirname "$file")"
        cat "$tmp" >"$file"
    fi
    rm -f "$tmp"
}

QEMU_CONF_SETTINGS=(
    'user = "root"'
    'group = "root"'
    'namespaces = [ ]'
    'stdio_handler = "file"'
)

# Both hosts bind their guests' VNC (and websocket, migration) ports on this machine's one port space:
# with libvirt's default ranges, two guests started at the same moment, one per host, both pick 5900 and
# one fails ("Failed to find an available port"). So each host gets ranges of its own.
host_port_settings() {
    local n="$1"
    local display=$((5900 + (n - 1) * 500)) websocket=$((5700 + (n - 1) * 100)) migration=$((49152 + (n - 1) * 32))
    echo "remote_display_port_min = $display"
    echo "remote_display_port_max = $((display + 499))"
    echo "remote_websocket_port_min = $websocket"
    echo "remote_websocket_port_max = $((websocket + 99))"
    echo "migration_port_min = $migration"
    echo "migration_port_max = $((migration + 31))"
}

# The whole qemu.conf managed block of host N.
host_qemu_settings() {
    printf '%s\n' "${QEMU_CONF_SETTINGS[@]}"
    host_port_settings "$1"
    if [ "$1" != 1 ]; then echo 'cgroup_controllers = [ ]'; fi
}

# set_conf_block FILE with host N's settings (one per line).
set_host_qemu_conf() {
    local n="$1" file="$2" settings=()
    mapfile -t settings < <(host_qemu_settings "$n")
    set_conf_block "$file" "${settings[@]}"
}

cmd_install() {
    ensure_packages "${PACKAGES[@]}"
    getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
    getent passwd libvirt-qemu >/dev/null ||
        useradd --system -g libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
    set_host_qemu_conf 1 /etc/libvirt/qemu.conf
    mkdir -p /var/log/libvirt/qemu /var/lib/libvirt /var/cache/libvirt /run/libvirt
    mkdir -p "$STATE"
    local n
    for n in "${HOSTS[@]}"; do
        mkdir -p "$(host_dir "$n")"
        [ -s "$(host_dir "$n")/host_uuid" ] || cat /proc/sys/kernel/random/uuid >"$(host_dir "$n")/host_uuid"
    done
    local d
    for d in etc run lib cache log/qemu; do mkdir -p "$(host_dir 2)/$d"; done
    log "installed (state in $STATE)"
}

# ---------------------------------------------------------------- helpers

# Echo PID from FILE if it names a live process whose executable is NAME.
live_pid() {
    local file="$1" name="$2" pid exe
    [ -s "$file" ] || return 1
    pid="$(tr -dc '0-9' <"$file")"
    [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
    exe="$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
    case "$exe" in */"$name"|*/"$name"" (deleted)") echo "$pid" ;; *) return 1 ;; esac
}

libvirtd_pid() { live_pid "$(pid_file "$1")" libvirtd; }

reachable() {
    timeout 10 virsh -q -c "$(host_uri "$1")" version >/dev/null 2>&1
}

write_libvirtd_conf() {
    local n="$1" file="$2"
    cat >"$file" <<EOF
# generated by tests/infra/libvirt_hosts.sh -- do not edit
listen_tls = 0
listen_tcp = 1
listen_addr = "$(host_addr "$n")"
tcp_port = "$PORT"
auth_tcp = "none"
auth_unix_ro = "none"
auth_unix_rw = "none"
unix_sock_group = "root"
host_uuid = "$(cat "$(host_dir "$n")/host_uuid")"
log_outputs = "3:file:$(host_dir "$n")/libvirtd.log"
EOF
}

# Host 2's private /etc/libvirt: top-level config files are refreshed from the
# real /etc/libvirt on every start; subdirectories (persistent domain XML in
# qemu/, networks, ...) are private to host 2 and kept across restarts.
prepare_host2_tree() {
    local h; h="$(host_dir 2)"
    local d
    for d in etc run lib cache log/qemu; do mkdir -p "$h/$d"; done
    local f
    for f in /etc/libvirt/*; do
        [ -f "$f" ] || continue
        case "$(basename "$f")" in qemu.conf|libvirtd.conf) continue ;; esac
        cp -p "$f" "$h/etc/"
    done
    cp /etc/libvirt/qemu.conf "$h/etc/qemu.conf"
    set_host_qemu_conf 2 "$h/etc/qemu.conf"
    write_libvirtd_conf 2 "$h/etc/libvirtd.conf"
    # Seed the QEMU capabilities cache from host 1 (saves the ~8 s probe).
    if [ ! -d "$h/cache/qemu/capabilities" ] && [ -d /var/cache/libvirt/qemu/capabilities ]; then
        mkdir -p "$h/cache/qemu"
        cp -a /var/cache/libvirt/qemu/capabilities "$h/cache/qemu/"
    fi
}

# The configuration host N's daemon would start with now, as a hash: a running daemon started with an
# older one (e.g. before the port ranges existed) is restarted by `start`, so a machine that was set up
# earlier gets the new settings without a manual stop.
config_hash() {
    local n="$1"
    if [ "$n" = 1 ]; then
        write_libvirtd_conf 1 "$(host_dir 1)/libvirtd.conf"
        cat /etc/libvirt/qemu.conf "$(host_dir 1)/libvirtd.conf" | sha256sum | cut -c1-16
    else
        prepare_host2_tree  # only files: the running daemon reads its configuration at start alone
        cat "$(host_dir 2)/etc/qemu.conf" "$(host_dir 2)/etc/libvirtd.conf" | sha256sum | cut -c1-16
    fi
}
config_stamp() { echo "$(host_dir "$1")/config.sha"; }

wait_reachable() {
    local n="$1" t0="$2"
    while ! reachable "$n"; do
        if ! libvirtd_pid "$n" >/dev/null; then
            tail -n 20 "$(host_dir "$n")/libvirtd.log" >&2 2>/dev/null || true
            die "libvirtd for host $n exited during startup (log: $(host_dir "$n")/libvirtd.log)"
        fi
        if [ $(( $(date +%s) - t0 )) -ge "$START_TIMEOUT" ]; then
            die "host $n not reachable at $(host_uri "$n") after ${START_TIMEOUT}s"
        fi
        sleep 0.2
    done
}

start_host() {
    local n="$1" pid
    if [ ! -s "$(host_dir "$n")/host_uuid" ] || [ ! -f /etc/libvirt/qemu.conf ]; then
        die "run '$0 install' first"
    fi
    local want; want="$(config_hash "$n")"
    if pid="$(libvirtd_pid "$n")"; then
        if [ "$(cat "$(config_stamp "$n")" 2>/dev/null)" = "$want" ]; then
            log "host $n already running (pid $pid)"
            wait_reachable "$n" "$(date +%s)"
            return 0
        fi
        # Its guests keep running: a restarted libvirtd picks them up again (as after stop-host/start-host).
        log "host $n (pid $pid) runs with an older configuration: restarting its libvirtd"
        kill_pid "$pid" TERM
    fi
    local t0 t0ns; t0="$(date +%s)"; t0ns="$(date +%s%N)"
    rm -f "$(pid_file "$n")"
    echo "$want" >"$(config_stamp "$n")"
    if [ "$n" = 1 ]; then
        mkdir -p /var/log/libvirt/qemu /run/libvirt
        # 9>&-: the daemon must not inherit our lock fd (it would hold the lock)
        libvirtd -d --listen -f "$(host_dir 1)/libvirtd.conf" -p "$(pid_file 1)" 9>&-
    else
        local h; h="$(host_dir 2)"
        # The daemonised libvirtd keeps the private mount namespace alive;
        # QEMU processes it spawns inherit it.
        unshare --mount --propagation private -- /bin/sh -ec '
            h="$1"; pidf="$2"
            mount --bind "$h/etc"   /etc/libvirt
            mkdir -p /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt
            mount --bind "$h/run"   /run/libvirt
            mount --bind "$h/lib"   /var/lib/libvirt
            mount --bind "$h/cache" /var/cache/libvirt
            mount --bind "$h/log"   /var/log/libvirt
            exec libvirtd -d --listen -f /etc/libvirt/libvirtd.conf -p "$pidf"
        ' fm-host2 "$h" "$(pid_file 2)" 9>&-
    fi
    local i=0
    until pid="$(libvirtd_pid "$n")"; do
        i=$((i + 1)); [ "$i" -lt 100 ] || die "libvirtd for host $n wrote no pid file"
        sleep 0.1
    done
    # Remember every mount namespace this host has used (a restarted host 2
    # gets a new one while QEMUs of the old one may still run).
    local ns; ns="$(readlink "/proc/$pid/ns/mnt")"
    grep -qxF "$ns" "$(host_dir "$n")/mntns" 2>/dev/null || echo "$ns" >>"$(host_dir "$n")/mntns"
    wait_reachable "$n" "$t0"
    local ms=$(( ($(date +%s%N) - t0ns) / 1000000 ))
    log "host $n up (pid $pid) in ${ms} ms: $(host_uri "$n")"
}

# True while PID exists and is not a zombie (daemons are reparented to this
# machine's pid 1, which may take a second or two to reap them).
pid_alive() {
    local st
    st="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
    [ -n "$st" ] && [ "$st" != Z ]
}

# kill -SIG (default TERM) a pid, escalate to KILL after 5 s; wait until gone
kill_pid() {
    local pid="$1" sig="${2:-TERM}" i
    kill "-$sig" "$pid" 2>/dev/null || return 0
    for i in $(seq 1 100); do
        pid_alive "$pid" || return 0
        [ "$i" = 50 ] && kill -KILL "$pid" 2>/dev/null
        sleep 0.1
    done
    log "WARNING: pid $pid did not exit"
}

is_qemu_pid() {
    case "$(readlink "/proc/$1/exe" 2>/dev/null || true)" in */qemu-system-*) return 0 ;; *) return 1 ;; esac
}

# QEMU processes belonging to host N: from its /run/libvirt/qemu/*.pid and,
# for host 2, any qemu in the mount namespace recorded at start.
host_qemu_pids() {
    local n="$1" f pid ns p
    for f in "$(run_dir "$n")"/qemu/*.pid; do
        [ -f "$f" ] || continue
        pid="$(tr -dc '0-9' <"$f")"
        [ -n "$pid" ] && is_qemu_pid "$pid" && echo "$pid"
    done
    if [ "$n" != 1 ] && [ -s "$(host_dir "$n")/mntns" ]; then
        local known; known=$'\n'"$(cat "$(host_dir "$n")/mntns")"$'\n'
        for p in /proc/[0-9]*; do
            pid="${p#/proc/}"
            ns="$(readlink "$p/ns/mnt" 2>/dev/null || true)"
            [ -n "$ns" ] && [[ "$known" == *$'\n'"$ns"$'\n'* ]] && is_qemu_pid "$pid" && echo "$pid"
        done
    fi
    return 0
}

stop_host() {
    local n="$1" pid dom
    if pid="$(libvirtd_pid "$n")"; then
        if reachable "$n"; then
            while read -r dom; do
                [ -n "$dom" ] || continue
                timeout 20 virsh -q -c "$(host_uri "$n")" destroy "$dom" >/dev/null 2>&1 ||
                    log "WARNING: could not destroy $dom on host $n"
            done < <(timeout 10 virsh -q -c "$(host_uri "$n")" list --name 2>/dev/null || true)
        fi
        kill_pid "$pid" TERM
        log "host $n libvirtd (pid $pid) stopped"
    fi
    rm -f "$(pid_file "$n")"
    local q
    for q in $(host_qemu_pids "$n" | sort -u); do
        log "killing leftover qemu pid $q of host $n"
        kill_pid "$q" TERM
    done
    if [ "$n" != 1 ]; then
        # Like a reboot: host 2's /run/libvirt is emptied once nothing uses it.
        rm -rf "${STATE:?}/host$n/run"
        mkdir -p "$(host_dir "$n")/run"
    fi
    rm -f "$(host_dir "$n")/mntns"
}

# ---------------------------------------------------------------- commands

cmd_start() {
    local n
    for n in "${HOSTS[@]}"; do start_host "$n"; done
    for n in "${HOSTS[@]}"; do host_uri "$n"; done
}

cmd_stop() {
    local n
    for n in "${HOSTS[@]}"; do stop_host "$n"; done
}

cmd_stop_host() {
    check_host_arg "${1:-}"
    local pid
    if pid="$(libvirtd_pid "$1")"; then
        kill_pid "$pid" KILL
        log "host $1 libvirtd (pid $pid) killed"
    else
        log "host $1 not running"
    fi
    rm -f "$(pid_file "$1")"
}

cmd_start_host() {
    check_host_arg "${1:-}"
    start_host "$1"
    host_uri "$1"
}

cmd_status() {
    local n pid rc=0
    for n in "${HOSTS[@]}"; do
        if pid="$(libvirtd_pid "$n")"; then
            if reachable "$n"; then
                local doms
                doms="$(timeout 10 virsh -q -c "$(host_uri "$n")" list --all --name 2>/dev/null | grep -c . || true)"
                echo "host $n: running pid=$pid uri=$(host_uri "$n") domains=$doms"
            else
                echo "host $n: running pid=$pid uri=$(host_uri "$n") NOT REACHABLE"; rc=1
            fi
        else
            echo "host $n: stopped uri=$(host_uri "$n")"
        fi
        local q; q="$(host_qemu_pids "$n" | sort -u | tr '\n' ' ')"
        [ -z "$q" ] || echo "host $n: qemu pids: $q"
    done
    return "$rc"
}

# Serialise mutating commands (parallel test workers may call us at once).
case "${1:-}" in
    install|start|stop|stop-host|start-host)
        mkdir -p "$STATE"
        exec 9>"$STATE/.lock"
        flock 9
        ;;
esac

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    stop-host) cmd_stop_host "${2:-}" ;;
    start-host) cmd_start_host "${2:-}" ;;
    status) cmd_status ;;
    uris) for n in "${HOSTS[@]}"; do host_uri "$n"; done ;;
    *) echo "usage: $0 install|start|stop|status|start-host N|stop-host N|uris" >&2; exit 2 ;;
esac
