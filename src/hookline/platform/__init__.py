"""The integration hub's domain: accounts, consumers, connections, syncs, issues and orders.

Use cases take a connection (their transaction) and plain values, and never import the HTTP
layer; every event they cause goes through :func:`hookline.delivery.emit.emit_draft` (a built
:class:`~hookline.delivery.emit.EventDraft`).
"""
