"""Sweeps: a grid of (architecture, length, recipe, ...) cells built, converted, measured and fitted.

`grid` expands flags or sweep.toml into cells; `build` makes one cell (the worker's job); `executors` runs cells in a
local pool or on Ray; `run` drives it and stores rows; `rows` reads them back; `scaling` fits exponents and the
crossover; `claims` checks the textbook claims; `report` is the sweep's report section.
"""
