"""Provenance: the recorded quanta behind every pipeline output, and lineage queries over them."""

from ..registry.quantum_store import DatasetLink, QuantumRecord, QuantumStore
from .provenance import Provenance, ProvenanceNode
from .recompute import RecomputePlan
from .software import environment, environment_id, git_sha

__all__ = ["DatasetLink", "Provenance", "ProvenanceNode", "QuantumRecord", "QuantumStore", "RecomputePlan", "environment",
           "environment_id", "git_sha"]
