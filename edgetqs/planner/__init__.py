"""Planner: board profiles, formats, byte costs, allocators, the Pareto front."""
