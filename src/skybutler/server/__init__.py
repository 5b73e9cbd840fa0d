"""The HTTP server of skybutler repositories (FastAPI; the ``server`` extra): see ``app.py``."""
