"""Fogmachine: a self-service mini-cloud over libvirt hosts and Cobbler."""

__version__ = "0.1.0"
