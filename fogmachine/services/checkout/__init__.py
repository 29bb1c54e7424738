"""Checking a guest out: the one way the pages, the API and scripts make a guest.

``checkout`` does what must be decided before the caller gets an answer:
validate the request, ask the catalog's source (fresh) for the profile or
image, place the guest and claim its capacity in the SAME transaction that
inserts its row. Then it returns the row at once (the API answers 202) and the
rest runs in the background, each step written to ``guest.step`` (registering,
defining, booting, installing, ready or failed), and a failed step's earlier
work torn down: ``engine`` says how.

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
