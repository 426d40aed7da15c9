"""The detector and its math: pure box functions, the learned anchors, assignment of ground truth to
anchors, the YOLOv2 loss with the anchors in the graph, decoding predictions, the network.

boxes      box formats, IoU, shape IoU, NMS (pure functions)
anchors    the learned anchors (a log-space parameter), their inits and fit metrics
assign     hard and soft assignment of ground-truth boxes to anchors
loss       the YOLOv2 loss with the anchor term not detached, plus online clustering
decode     predictions to boxes, NMS
detector   backbones and the YOLOv2 head (with the batch norm without shift), darknet's reorg
darknet_weights  darknet's binary .weights files, in yolo-voc.cfg's layer order
pretrained load_pretrained: model.pretrained (darknet files, state dicts, a job's weights.pt)
"""
