"""Anchors without training: the solvers (the learned fit, k-means, the autoanchor baseline) and the
report the `anchor-opt fit` command prints, plots and writes.

solver        fit_anchors, FitResult, which boxes are fitted and the inits a fit starts from
learned       the log-space objective: the soft warm-up and the hard phase
refine        the IoU phase: Adam on the mean best IoU under a BPR guard
autoanchor    YOLOv5's autoanchor re-implemented, a baseline
shapes        box shapes laid out [A, N] for the inner loops
strides       each level's stride, and the floor --min-stride-fraction puts under it
anchor_lists  the anchor lists people paste (--compare, --init)
report        the comparison of fits, as a table, a picture and JSON
dataset       fit_dataset: a dataset read, fitted and reported
"""
