"""The hypervisor adapter: one watched libvirt connection per host (see ``connection``;
opened by ``opening``, its calls in ``inventory``, ``domainops`` and ``volumes``), the
fleet that holds them over shared call threads (``fleet``, ``callthreads``), domain XML
(``domainxml``) and the one place libvirt's errors become Fogmachine's (``errors``).

A pure adapter: nothing here knows the database, the services or the context. What
the hosts report goes to a ``Listener``; the server's is
``services.hostwatch.HostManager``, which writes it into rows."""

from fogmachine.virt.connection import DomainEvent, HostConnection
from fogmachine.virt.fleet import HostFleet
from fogmachine.virt.inventory import DomainInfo, HostFacts, HostSnapshot
from fogmachine.virt.listener import Listener

__all__ = ["DomainEvent", "DomainInfo", "HostConnection", "HostFacts", "HostFleet", "HostSnapshot", "Listener"]
