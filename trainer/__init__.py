"""anchor-opt trainer: a YOLOv2-style detector whose anchor shapes are learned while it trains.

Modules, in the order data flows through them:
    config          every setting, with its default and why (no torch)
    storage/        objects in a local folder or S3, the mirror of s3:// datasets (no torch)
    data/           dataset readers (COCO, YOLO, VOC, Brainwash), bad-data policy, augmentation,
                    the synthetic set, the torch datasets
    boxes           pure box math (format conversions, IoU, shape IoU, NMS)
    anchors         the learned anchors (log-space parameter), their inits and fit metrics
    fit             anchors without training (k-means, the learned log-space fit); fit_report prints it
    model           backbones and the YOLOv2 head (with the batch norm without shift)
    assign          hard and soft assignment of ground-truth boxes to anchors
    loss            the YOLOv2 loss with the anchors kept in the graph, plus online clustering
    decode          predictions to boxes, NMS
    engine          training state, one step, exact checkpoints
    run             a whole local run writing snapshots, metrics and result (outputs, plots)
    evaluate        COCO AP and VOC07 11-point AP through pycocotools
    jobs/           the job contract: spec, document schemas, job store (no torch)
    cli             the `anchor-opt` command
"""

__version__ = "0.1.0"
