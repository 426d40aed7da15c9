"""anchor-opt trainer: a YOLOv2-style detector whose anchor shapes are learned while it trains.

Packages and modules, in the order data flows through them:
    config          every setting, with its default and why (no torch)
    safe_yaml       the YAML loader every file a person writes goes through (no torch)
    contract/       what the control plane and the trainer share (no torch): the job spec, the JSON
                    documents, status transitions, the run writer, the job store, storage/ (a local
                    folder or S3, URIs, the mirror of s3:// datasets)
    data/           dataset readers (COCO, YOLO, VOC, Brainwash, image folders) confined to their
                    root, bad-data policy, augmentation, the synthetic set, the torch datasets
    model/          boxes, anchors, assignment, loss, decoding, the detector
    fit/            anchors without training (k-means, the learned log-space fit) and its report
    train/          state and step, evaluation, checkpoints, the loop, the local and Ray runs, the
                    job driver, what rank 0 reports
    artifacts/      pictures, terminal tables, exported anchors and weights
    cli             the `anchor-opt` command

The service imports only torch-free parts: config, safe_yaml, contract/, artifacts.plots and
artifacts.terminal (tests/test_layout.py lists what it loads).
"""

__version__ = "0.1.0"
