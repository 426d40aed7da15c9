import math

import torch

from trainer.model.decode import decode_boxes, postprocess


def test_zero_offsets_decode_to_the_anchor_at_the_cell_centre():
    pred = torch.zeros(1, 2, 2, 3, 7)
    log_anchors = torch.tensor([[8.0, 8.0], [20.0, 10.0]]).log()
    boxes = decode_boxes(pred, log_anchors, stride=16)
    assert boxes.shape == (1, 2, 2, 3, 4)
    # anchor 1, row 1, column 2: centre ((2 + 0.5) * 16, (1 + 0.5) * 16) = (40, 24), size 20 x 10
    torch.testing.assert_close(boxes[0, 1, 1, 2], torch.tensor([30.0, 19.0, 50.0, 29.0]))


def test_size_offsets_scale_the_anchor():
    pred = torch.zeros(1, 1, 1, 1, 6)
    pred[..., 2], pred[..., 3] = math.log(2), math.log(0.5)
    box = decode_boxes(pred, torch.tensor([[10.0, 10.0]]).log(), stride=32)[0, 0, 0, 0]
    torch.testing.assert_close(box[2:] - box[:2], torch.tensor([20.0, 5.0]))


def test_postprocess_keeps_confident_boxes_and_suppresses_duplicates():
    pred = torch.full((1, 2, 2, 2, 7), -10.0)  # everything unlikely
    pred[..., :4] = 0
    pred[0, 0, 0, 0, 4] = 5.0  # confident object, class 1
    pred[0, 0, 0, 0, 6] = 5.0
    pred[0, 1, 0, 0, 4] = 4.0  # its near-duplicate with a bigger anchor, same class
    pred[0, 1, 0, 0, 6] = 5.0
    log_anchors = torch.tensor([[10.0, 10.0], [11.0, 11.0]]).log()
    (det,) = postprocess(pred, log_anchors, stride=16, conf_threshold=0.1, nms_iou=0.5)
    assert det["labels"].tolist() == [1] and det["scores"].shape == (1,)
    assert det["scores"][0] > 0.9
    assert bool((det["boxes"] >= 0).all() and (det["boxes"] <= 32).all())


def test_a_box_likely_of_two_classes_is_detected_as_both():
    # One confident box (objectness ~1) split evenly between classes 0 and 1 (P 0.5 each, class 2
    # ~0): two detections of the same box, one per class, as darknet's per-class scores give.
    pred = torch.full((1, 1, 1, 1, 8), -10.0)
    pred[..., :4] = 0
    pred[..., 4] = 10.0
    pred[..., 5], pred[..., 6] = 5.0, 5.0
    (det,) = postprocess(pred, torch.tensor([[10.0, 10.0]]).log(), stride=16, conf_threshold=0.3)
    assert sorted(det["labels"].tolist()) == [0, 1]
    torch.testing.assert_close(det["scores"], torch.full((2,), 0.5), atol=1e-3, rtol=0)
    torch.testing.assert_close(det["boxes"][0], det["boxes"][1])


def test_postprocess_caps_detections_per_image_best_first_and_keeps_images_apart():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(3, 5, 4, 4, 5 + 6, generator=g) * 3
    pred[2, ..., 4] = -20.0  # nothing in the third image
    log_anchors = torch.tensor([[8.0, 8.0], [16, 16], [24, 12], [12, 24], [32, 32]]).log()
    dets = postprocess(pred, log_anchors, stride=16, conf_threshold=0.05, nms_iou=0.45, max_detections=7)
    assert [len(d["scores"]) for d in dets[:2]] == [7, 7] and len(dets[2]["scores"]) == 0
    for d in dets:
        assert d["boxes"].shape == (len(d["scores"]), 4) and d["labels"].dtype == torch.long
        assert bool((d["scores"][:-1] >= d["scores"][1:]).all()) and bool((d["scores"] > 0.05).all())
    # the first image alone gives its same detections
    (alone,) = postprocess(
        pred[:1], log_anchors, stride=16, conf_threshold=0.05, nms_iou=0.45, max_detections=7
    )
    torch.testing.assert_close(alone["boxes"], dets[0]["boxes"])


def test_levels_decode_each_with_its_own_stride_and_anchors_and_compete_in_one_nms():
    from trainer.model.decode import decode_levels

    fine = torch.full((1, 1, 4, 4, 6), -10.0)  # stride 8, anchor 8x8
    coarse = torch.full((1, 1, 2, 2, 6), -10.0)  # stride 16, anchor 24x24
    fine[..., :4] = coarse[..., :4] = 0.0  # centred in the cell, the anchor's size
    log_anchors = torch.tensor([[8.0, 8.0], [24.0, 24.0]]).log()
    boxes, raw = decode_levels([fine, coarse], log_anchors, [8, 16])
    assert boxes.shape == (1, 16 + 4, 4) and raw.shape == (1, 20, 6)
    torch.testing.assert_close(boxes[0, :16], decode_boxes(fine, log_anchors[:1], 8).view(16, 4))
    torch.testing.assert_close(boxes[0, 16:], decode_boxes(coarse, log_anchors[1:], 16).view(4, 4))
    fine[0, 0, 3, 3, 4] = 5.0  # a confident small box at (28, 28)
    coarse[0, 0, 0, 0, 4] = 4.0  # and a large one at (8, 8)
    (found,) = postprocess([fine, coarse], log_anchors, [8, 16], conf_threshold=0.5)
    torch.testing.assert_close(
        found["boxes"], torch.tensor([[24.0, 24.0, 32.0, 32.0], [0.0, 0.0, 20.0, 20.0]])
    )
