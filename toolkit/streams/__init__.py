"""Streaming measured: per-step latency and memory as the context grows (`profile`), the report's streaming section
(`report`), and the RNN vs causal Transformer streaming comparison (`compare`).
"""
