"""anchor-opt trainer: a YOLOv2-style detector whose anchor shapes are learned while it trains.

Modules, in the order data flows through them:
    boxes     pure box math (format conversions, IoU, shape IoU, NMS)
    anchors   the learned anchors (log-space parameter), their inits and fit metrics
    synthetic a deterministic dataset whose box shapes come from a known mixture
    model     backbones and the YOLOv2 head (with the batch norm without shift)
    assign    hard and soft assignment of ground-truth boxes to anchors
    loss      the YOLOv2 loss with the anchors kept in the graph, plus online clustering
    decode    predictions to boxes, NMS
    engine    the training loop and exact checkpoints
    config    every setting, with its default and why
"""

__version__ = "0.1.0"
