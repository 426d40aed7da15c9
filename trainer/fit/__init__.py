"""Anchors without training: the solvers (k-means, the learned log-space fit) and the report the
`anchor-opt fit` command prints, plots and writes.

solver   fit_anchors and the inits it starts from
report   the comparison of fits, as a table, a picture and JSON
"""
