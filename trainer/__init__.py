"""anchor-opt trainer: a YOLOv2-style detector whose anchor shapes are learned while it trains.

Modules, in the order data flows through them:
    config          every setting, with its default and why (no torch)
    data/synthetic  a deterministic dataset whose box shapes come from a known mixture
    boxes           pure box math (format conversions, IoU, shape IoU, NMS)
    anchors         the learned anchors (log-space parameter), their inits and fit metrics
    model           backbones and the YOLOv2 head (with the batch norm without shift)
    assign          hard and soft assignment of ground-truth boxes to anchors
    loss            the YOLOv2 loss with the anchors kept in the graph, plus online clustering
    decode          predictions to boxes, NMS
    engine          training state, one step, exact checkpoints
    run             a whole local run writing snapshots, metrics and result (outputs, plots)
    evaluate        COCO AP through pycocotools
    cli             the `anchor-opt` command
"""

__version__ = "0.1.0"
