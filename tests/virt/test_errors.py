"""libvirt's errors become Fogmachine's, in fogmachine.virt.errors only."""

import subprocess
import sys

import libvirt
import pytest

from fogmachine.errors import BackendError, BackendTimeout, Conflict, HostUnreachable, NotFound
from fogmachine.virt.errors import is_connection_error, silence_libvirt, translate, translate_connect
from tests.support import testhosts


def _raised(fn, *args):
    try:
        fn(*args)
    except libvirt.libvirtError as exc:
        return exc
    raise AssertionError("libvirt did not raise")


def _error(code: int, domain: int, message: str) -> libvirt.libvirtError:
    """A libvirtError carrying QEMU's codes (for the wordings only real QEMU produces)."""
    exc = libvirt.libvirtError(message)
    exc.err = (code, domain, message, libvirt.VIR_ERR_ERROR, None, None, None, 0, 0)
    return exc


@pytest.fixture
def conn(tmp_path):
    silence_libvirt()
    uri = testhosts.write_host(tmp_path, "h", domains=[
        testhosts.TestDomain("web1"), testhosts.TestDomain("db1", state="shutoff"),
        testhosts.TestDomain("idle", state="paused")])
    connection = libvirt.open(uri)
    yield connection
    connection.close()


def test_no_domain_is_not_found(conn):
    exc = _raised(conn.lookupByName, "nope")
    err = translate(exc, host="h1", action="start", guest="nope")
    assert isinstance(err, NotFound)
    assert err.message == "guest nope has no domain on host h1"
    assert err.details["libvirt_code"] == libvirt.VIR_ERR_NO_DOMAIN


@pytest.mark.parametrize(("domain", "op", "wording"), [
    ("web1", "create", "guest web1 is already running"),
    ("db1", "shutdown", "guest db1 is not running"),
    ("db1", "suspend", "guest db1 is not running"),
    ("web1", "resume", "guest web1 is not paused"),
])
def test_state_conflicts_from_the_test_driver(conn, domain, op, wording):
    exc = _raised(getattr(conn.lookupByName(domain), op))
    err = translate(exc, host="h1", action=op, guest=domain)
    assert isinstance(err, Conflict)
    assert err.message == wording


@pytest.mark.parametrize(("message", "wording"), [
    ("Requested operation is not valid: domain is already running", "guest web1 is already running"),
    ("Requested operation is not valid: domain is not running", "guest web1 is not running"),
])
def test_state_conflicts_in_qemu_wording(message, wording):
    err = translate(_error(libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_FROM_QEMU, message),
                    host="kvm1", action="start", guest="web1")
    assert isinstance(err, Conflict) and err.message == wording


def test_other_invalid_operation_is_still_a_conflict():
    err = translate(_error(libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_FROM_QEMU,
                           "Requested operation is not valid: cannot undefine transient domain"),
                    host="kvm1", action="undefine", guest="web1")
    assert isinstance(err, Conflict)
    assert err.message == ("host kvm1 refused undefine: "
                           "Requested operation is not valid: cannot undefine transient domain")


def test_closed_port_is_unreachable():
    silence_libvirt()
    exc = _raised(libvirt.open, "qemu+tcp://127.0.0.1:1/system")
    assert is_connection_error(exc)
    err = translate_connect(exc, host="far", uri="qemu+tcp://127.0.0.1:1/system")
    assert isinstance(err, HostUnreachable) and err.status == 502
    assert "Connection refused" in err.message and "far" in err.message
    # and the same error met during a call (the host went away) says unreachable too
    assert isinstance(translate(exc, host="far", action="start", guest="web1"), HostUnreachable)


def test_dead_connection_mid_call_is_unreachable():
    err = translate(_error(libvirt.VIR_ERR_INTERNAL_ERROR, libvirt.VIR_FROM_RPC, "client socket is closed"),
                    host="kvm1", action="start", guest="web1")
    assert isinstance(err, HostUnreachable)


def test_timeouts_and_everything_else():
    timeout = translate(_error(libvirt.VIR_ERR_OPERATION_TIMEOUT, libvirt.VIR_FROM_QEMU, "timed out"),
                        host="kvm1", action="shutdown", guest="web1")
    assert isinstance(timeout, BackendTimeout) and timeout.status == 504
    other = translate(_error(libvirt.VIR_ERR_INTERNAL_ERROR, libvirt.VIR_FROM_QEMU, "qemu unexpectedly closed"),
                      host="kvm1", action="start", guest="web1")
    assert type(other) is BackendError
    assert other.message == "host kvm1: start failed: qemu unexpectedly closed"
    xml = translate(_error(libvirt.VIR_ERR_XML_ERROR, libvirt.VIR_FROM_DOMAIN, "bad"), host="k", action="define")
    assert type(xml) is BackendError  # Fogmachine wrote that XML: not the client's fault


def _stderr_of(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_libvirt_prints_nothing_once_silenced():
    failing = ("import libvirt\nc = libvirt.open('test:///default')\n"
               "try:\n    c.lookupByName('nope')\nexcept libvirt.libvirtError:\n    pass\n")
    assert "Domain not found" in _stderr_of(failing)  # libvirt's default: a copy on stderr
    assert _stderr_of("from fogmachine.virt.errors import silence_libvirt\nsilence_libvirt()\n" + failing) == ""


def test_a_missing_backing_image_is_named():
    """QEMU's storage driver wording (the test driver never reads backing files; the real-host test does)."""
    error = _error(libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_FROM_STORAGE,
                   "inaccessible backing store volume /images/nope.qcow2: No such file or directory")
    translated = translate(error, host="h1", action="create volume", guest="web1")
    assert isinstance(translated, BackendError)
    assert translated.message == ("host h1 cannot use the disk image for web1: inaccessible backing store volume "
                                  "/images/nope.qcow2: No such file or directory")
