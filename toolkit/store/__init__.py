"""The results store: SQLite, one row per measured run.

`results.ResultsStore` is the API; `schema` creates, migrates and checks the file; `rows` encodes and decodes a row.
"""
