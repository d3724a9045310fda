"""Reports over the results store: rows and columns, text/markdown/CSV/JSON, the HTML page, plots, comparisons.

`dispatch` picks the format (`write_report`, `show_report`); `rows` builds the table; `text` and `html` render it;
`plots` draws the figures; `compare` puts two runs side by side.
"""
