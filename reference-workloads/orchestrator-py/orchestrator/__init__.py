"""Archetype A reference workload: a small Python orchestrator that knows nothing about agentvm."""
