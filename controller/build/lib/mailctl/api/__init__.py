"""The HTTP API (FastAPI): health, readiness, status."""
