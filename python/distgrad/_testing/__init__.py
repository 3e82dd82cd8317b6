"""Helpers for testing distgrad: a local multi-process job (Cluster) whose
rank 0 is the calling process."""

from .cluster import Cluster

__all__ = ["Cluster"]
