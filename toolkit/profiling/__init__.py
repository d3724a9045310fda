"""Profiling on targets: `run` profiles models and stores each run, `fleet` runs several targets at once,
`memory_need` checks a model fits under --memory-limit before anything runs, `ops` turns the agent's per-op section
into the figures tables show.
"""
