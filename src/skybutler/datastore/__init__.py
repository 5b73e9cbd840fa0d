"""The datastore: dataset artifacts on local disk or any fsspec file system."""

from .datastore import FileDatastore, PendingArtifact

__all__ = ["FileDatastore", "PendingArtifact"]
