"""The hypervisor layer: one watched libvirt connection per host (see ``connection``),
the manager that owns them (``manager``), domain XML (``domainxml``) and the one
place libvirt's errors become Fogmachine's (``errors``)."""

from fogmachine.virt.connection import DomainEvent, HostConnection
from fogmachine.virt.inventory import DomainInfo, HostFacts, HostSnapshot
from fogmachine.virt.manager import HostManager

__all__ = ["DomainEvent", "DomainInfo", "HostConnection", "HostFacts", "HostManager", "HostSnapshot"]
