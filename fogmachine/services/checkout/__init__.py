"""Checking a guest out: the one way the pages, the API and scripts make a guest.

``checkout`` does what must be decided before the caller gets an answer:
validate the request, ask the catalog's source (fresh) for the profile or
image, place the guest and claim its capacity in the SAME transaction that
inserts its row. Then it returns the row at once (the API answers 202) and the
rest runs in the background, each step written to ``guest.step``:

    registering  the guest's record with the catalog source, when it keeps one (Cobbler:
                 the system, with the phone-home server and token in autoinstall_meta)
    defining     a volume where the host has a storage pool (an overlay of the profile's
                 disk image, see ``diskimages``), then the domain
    booting      starting it
    installing   waiting for the guest's phone-home (``/guest/<mac>/set``)
    ready        (or ``failed`` with the reason in ``step_reason``)

Nothing is left half-made: when a step fails, what the earlier steps made is
torn down by ``teardown.release_each``, as for a deleted guest (domain
destroyed and undefined, volume deleted, Cobbler system removed); the guest is
marked failed, with whatever could not be removed still on its row, and its
capacity is released (placement does not count failed guests). If the guest
row disappears while the steps run (the owner deleted it), the steps tear
down what they made and stop.

No Cobbler ``sync``: Cobbler 3.3's ``save_system`` already writes the one
system's boot files (and DHCP entry, when Cobbler manages DHCP). Direct kernel
boot needs nothing from sync at all.

The phone-home token is random, shown to the guest only (through Cobbler's
autoinstall_meta or the kernel command line) and stored as a SHA-256 hash.

Two parts, two modules: ``claim`` (the one transaction before the answer:
validate, place, insert) and ``engine`` (the background steps, their undo
through ``teardown``, and the ``Provisioner`` that holds the running ones);
``bootline`` writes the kernel command line a direct-boot guest gets.
"""

from fogmachine.services.checkout.bootline import autoinstall_url, kernel_cmdline, phonehome_url
from fogmachine.services.checkout.claim import (
    MAX_PURPOSE,
    CheckoutRequest,
    checkout,
    new_mac,
    preview,
    validate,
    validate_name,
    validate_purpose,
)
from fogmachine.services.checkout.engine import Job, Provisioner

__all__ = [
    "MAX_PURPOSE", "CheckoutRequest", "Job", "Provisioner", "autoinstall_url", "checkout", "kernel_cmdline",
    "new_mac", "phonehome_url", "preview", "validate", "validate_name", "validate_purpose",
]
