"""Environments: several guests checked out as one, in ordered tiers, for one lease (issue 14).

``spec`` is a template's shape (tiers, counts, name patterns, anti-affinity,
variables) and its structural validation; the modules beside it build on it:
the variables' sandboxed evaluation, the templates' storage and files, the
claim of every tier's capacity in one transaction, and the engine that starts
each tier once the tiers before it are ready.
"""
