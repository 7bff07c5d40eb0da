"""The HTTP API: FastAPI app, one router per resource, contract-shaped errors."""
