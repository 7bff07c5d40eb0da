"""Webhooks and delivery: the outbox, fan-out, signing, sending, retries and logs.

This package knows accounts only by id and consumers only as an opaque id in a body.
"""
