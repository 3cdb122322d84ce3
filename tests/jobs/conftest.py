"""Fixtures for the jobs tests (the cluster itself is in jobs_cluster.py)."""

from __future__ import annotations

from jobs_cluster import cluster, jobs_dir

__all__ = ["cluster", "jobs_dir"]
