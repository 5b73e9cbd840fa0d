"""The remote client: a butler's transport to a skybutler server (see ``client.py``)."""
