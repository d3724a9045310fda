"""A user's own functional graph streamed: `plan` walks it and decides how it streams, `rules` holds the per-layer
rules, `step` runs one step through it.
"""
