#!/usr/bin/env bash
# Build a tiny direct-kernel-boot guest for Fogmachine's libvirt tests.
#
# Usage: tiny_guest.sh build     -> $STATE/tiny/vmlinuz and $STATE/tiny/initrd.img
#        tiny_guest.sh path      -> print the two paths
#
# Everything comes from Debian packages fetched with `apt-get download` and
# unpacked with `dpkg-deb -x` (the kernel package is never installed):
#   - vmlinuz: the linux-image-*-cloud-amd64 that linux-image-cloud-amd64 depends on
#   - initrd.img: busybox-static + virtio-net modules + the /init below,
#     packed as cpio newc + gzip.
# The build is skipped when the outputs exist and were made by this exact
# script (sha256 of this file + kernel package name).
#
# Kernel command line understood by /init (boot with "console=tty0 console=ttyS0 panic=-1 ..."; the
# last console= is /dev/console, so ttyS0 gets the log; tty0 puts the kernel's text on the VGA screen
# that the graphical console shows):
#   fm.hostname=NAME      set the hostname
#   fm.phonehome=URL      GET URL (retry every 1 s, up to 60 times) -- "bare boot"
#   autoinstall=URL|ks=URL fetch a kickstart-like file (same retries), run the
#                         lines between a line starting with "%post" and the
#                         next line "%end" with sh (as /tmp/post.sh)
# Arguments are read verbatim from /proc/cmdline split on spaces: a URL may
# contain '&', '?' or '=' but no spaces or quotes (the kernel does not unquote
# for us). The guest network is QEMU user-mode: eth0 10.0.2.15/24, gateway
# 10.0.2.2 (= the host's 127.0.0.1). Everything is logged to ttyS0 with the
# prefix "fm-init:"; "fm-init: ready" is printed last. Then a root shell runs on
# ttyS0 (respawned when it exits), for the serial console tests; the guest never
# powers off by itself (busybox ignores ACPI shutdown: use destroy()).
set -euo pipefail

STATE="${FM_TEST_STATE:-/var/tmp/fogmachine-test}"
OUT="$STATE/tiny"
SELF="$(readlink -f "${BASH_SOURCE[0]}")"
META_PKG=linux-image-cloud-amd64
# insmod order matters (dependencies first)
MODULES="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net"

log() { echo "tiny_guest: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

APT_UPDATED=0
apt_update_once() {
    if [ "$APT_UPDATED" = 0 ]; then apt-get update -qq >&2; APT_UPDATED=1; fi
}

ensure_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    log "installing ${missing[*]}"
    apt_update_once
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

kernel_package() {
    local pkg
    pkg="$(apt-cache depends "$META_PKG" 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')" || true
    if [ -z "$pkg" ]; then
        apt_update_once
        pkg="$(apt-cache depends "$META_PKG" | awk '/Depends: linux-image-[0-9]/{print $2; exit}')"
    fi
    [ -n "$pkg" ] || die "cannot resolve the kernel package behind $META_PKG"
    echo "$pkg"
}

# Download PKG's .deb into $OUT/debs (cached); echo its path.
fetch_deb() {
    local pkg="$1" f
    mkdir -p "$OUT/debs"
    for f in "$OUT/debs/${pkg}_"*.deb; do
        [ -f "$f" ] && { echo "$f"; return 0; }
    done
    (cd "$OUT/debs" && apt-get download -qq "$pkg" >/dev/null 2>&1) ||
        (apt_update_once && cd "$OUT/debs" && apt-get download -qq "$pkg" >/dev/null) ||
        die "apt-get download $pkg failed"
    for f in "$OUT/debs/${pkg}_"*.deb; do
        [ -f "$f" ] && { echo "$f"; return 0; }
    done
    die "no .deb for $pkg after download"
}

write_init() {
    cat >"$1" <<'INIT'
#!/bin/sh
# /init of the Fogmachine tiny test guest (see tests/infra/tiny_guest.sh)
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
log() { echo "fm-init: $*"; }
log "start (uptime $(cut -d' ' -f1 /proc/uptime)s)"

HN= ; PH= ; AI=
set -f
for a in $(cat /proc/cmdline); do
    case "$a" in
        fm.hostname=*) HN="${a#fm.hostname=}" ;;
        fm.phonehome=*) PH="${a#fm.phonehome=}" ;;
        autoinstall=*) AI="${a#autoinstall=}" ;;
        ks=*) AI="${a#ks=}" ;;
    esac
done
set +f

for m in $(cat /etc/fm-modules); do
    insmod "/lib/modules/$m.ko" || log "insmod $m failed"
done

[ -n "$HN" ] && hostname "$HN" && log "hostname $HN"

ip link set lo up
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
if [ -e /sys/class/net/eth0 ]; then
    ip addr add 10.0.2.15/24 dev eth0
    ip link set eth0 up
    ip route add default via 10.0.2.2
    echo "nameserver 10.0.2.3" >/etc/resolv.conf
    log "eth0 up: 10.0.2.15/24 via 10.0.2.2 mac $(cat /sys/class/net/eth0/address)"
else
    log "no eth0!"
fi

# fetch URL FILE: busybox wget (wrapped in timeout: busybox 1.35's wget -T
# segfaults), retried every second, up to 60 tries.
fetch() {
    n=0
    while [ $n -lt 60 ]; do
        if timeout 10 wget -q -O "$2" "$1"; then return 0; fi
        n=$((n + 1))
        sleep 1
    done
    return 1
}

if [ -n "$PH" ]; then
    log "phonehome $PH"
    if fetch "$PH" /tmp/phonehome.out; then log "phonehome ok"; else log "phonehome FAILED"; fi
fi

if [ -n "$AI" ]; then
    log "installer: fetching $AI"
    if fetch "$AI" /tmp/autoinstall.cfg; then
        awk '/^%post/ { inpost = 1; next }
             inpost && /^%end[ \t\r]*$/ { exit }
             inpost { print }' /tmp/autoinstall.cfg >/tmp/post.sh
        log "installer: running %post ($(wc -l </tmp/post.sh) lines)"
        sh /tmp/post.sh
        log "installer: %post exited $?"
    else
        log "installer: fetch FAILED"
    fi
fi

log "ready (uptime $(cut -d' ' -f1 /proc/uptime)s)"
# A shell on the serial port, respawned: cttyhack makes /dev/console's real tty (ttyS0) the shell's
# controlling terminal, so the line discipline echoes what is typed and Ctrl-C works.
while true; do setsid cttyhack sh; sleep 1; done
INIT
    chmod 755 "$1"
}

cmd_build() {
    ensure_packages busybox-static cpio gzip
    mkdir -p "$OUT"
    exec 9>"$OUT/.lock"
    flock 9
    local kpkg stamp
    kpkg="$(kernel_package)"
    stamp="$(sha256sum "$SELF" | cut -d' ' -f1) $kpkg"
    if [ -s "$OUT/vmlinuz" ] && [ -s "$OUT/initrd.img" ] &&
        [ "$(cat "$OUT/build.stamp" 2>/dev/null)" = "$stamp" ]; then
        log "up to date: $OUT/vmlinuz $OUT/initrd.img ($kpkg)"
        return 0
    fi
    local t0; t0="$(date +%s%N)"
    local kdeb bbdeb work
    kdeb="$(fetch_deb "$kpkg")"
    bbdeb="$(fetch_deb busybox-static)"
    work="$OUT/build"
    rm -rf "$work"
    mkdir -p "$work/kernel" "$work/bb" "$work/root"
    dpkg-deb -x "$kdeb" "$work/kernel"
    dpkg-deb -x "$bbdeb" "$work/bb"

    local kver
    kver="$(basename "$(ls -d "$work"/kernel/lib/modules/*/ | head -n1)")"
    [ -f "$work/kernel/boot/vmlinuz-$kver" ] || die "no vmlinuz-$kver in $kdeb"

    local r="$work/root"
    mkdir -p "$r"/{bin,dev,proc,sys,tmp,etc,lib/modules,root}
    ln -s bin "$r/sbin"
    cp "$work/bb/bin/busybox" "$r/bin/busybox"
    local a
    for a in $("$r/bin/busybox" --list); do
        [ "$a" = busybox ] || ln -sf busybox "$r/bin/$a"
    done
    mknod -m 600 "$r/dev/console" c 5 1
    mknod -m 666 "$r/dev/null" c 1 3
    echo "root:x:0:0:root:/root:/bin/sh" >"$r/etc/passwd"
    echo "root:x:0:" >"$r/etc/group"

    local m f loaded=""
    for m in $MODULES; do
        f="$(find "$work/kernel/lib/modules/$kver" -name "$m.ko*" | head -n1)"
        if [ -z "$f" ]; then
            grep -q "/$m.ko\$" "$work/kernel/lib/modules/$kver/modules.builtin" 2>/dev/null ||
                die "module $m neither in $kpkg nor built in"
            continue
        fi
        case "$f" in
            *.ko) cp "$f" "$r/lib/modules/$m.ko" ;;
            *.ko.xz) xz -dc "$f" >"$r/lib/modules/$m.ko" ;;
            *.ko.zst) zstd -qdc "$f" >"$r/lib/modules/$m.ko" ;;
            *.ko.gz) gzip -dc "$f" >"$r/lib/modules/$m.ko" ;;
            *) die "unknown module format $f" ;;
        esac
        loaded="$loaded $m"
    done
    echo "$loaded" >"$r/etc/fm-modules"
    write_init "$r/init"

    (cd "$r" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -9 -n >"$OUT/initrd.img.tmp"
    cp "$work/kernel/boot/vmlinuz-$kver" "$OUT/vmlinuz.tmp"
    mv "$OUT/initrd.img.tmp" "$OUT/initrd.img"
    mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
    echo "$stamp" >"$OUT/build.stamp"
    rm -rf "$work"
    local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    log "built $OUT/vmlinuz ($kver) and $OUT/initrd.img ($(stat -c %s "$OUT/initrd.img") bytes) in ${ms} ms"
}

case "${1:-}" in
    build) cmd_build ;;
    path) echo "$OUT/vmlinuz"; echo "$OUT/initrd.img" ;;
    *) echo "usage: $0 build|path" >&2; exit 2 ;;
esac
