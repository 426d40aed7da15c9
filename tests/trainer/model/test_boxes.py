import pytest
import torch

from trainer.model.boxes import (
    box_area,
    box_iou,
    cxcywh_to_xyxy,
    shape_iou,
    wh_ratio_metric,
    xywh_to_xyxy,
    xyxy_to_cxcywh,
    xyxy_to_xywh,
)


def random_xyxy(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 100
    wh = torch.rand(n, 2, generator=g) * 50 + 1
    return torch.cat([xy, xy + wh], dim=1)


def test_format_round_trips():
    b = random_xyxy(50)
    torch.testing.assert_close(cxcywh_to_xyxy(xyxy_to_cxcywh(b)), b)
    torch.testing.assert_close(xywh_to_xyxy(xyxy_to_xywh(b)), b)
    c = xyxy_to_cxcywh(b)
    torch.testing.assert_close(xyxy_to_cxcywh(cxcywh_to_xyxy(c)), c)


def test_formats_on_a_known_box_and_batched_shapes():
    b = torch.tensor([10.0, 20.0, 30.0, 60.0])
    assert xyxy_to_cxcywh(b).tolist() == [20.0, 40.0, 20.0, 40.0]
    assert xyxy_to_xywh(b).tolist() == [10.0, 20.0, 20.0, 40.0]
    assert box_area(b).item() == 800.0
    assert xyxy_to_cxcywh(random_xyxy(6).view(2, 3, 4)).shape == (2, 3, 4)


def test_box_iou_known_values():
    a = torch.tensor([[0.0, 0, 10, 10]])
    b = torch.tensor([[0.0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [2, 2, 4, 4]])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[1.0, 1 / 3, 0.0, 0.04]]))


def test_box_iou_batched_matches_unbatched():
    a, b = random_xyxy(8, 1).view(2, 4, 4), random_xyxy(6, 2).view(2, 3, 4)
    out = box_iou(a, b)
    assert out.shape == (2, 4, 3)
    for i in range(2):
        torch.testing.assert_close(out[i], box_iou(a[i], b[i]))


def test_shape_iou_ignores_position():
    wh = torch.tensor([[2.0, 2.0], [1.0, 1.0], [4.0, 1.0]])
    iou = shape_iou(wh, wh)
    assert iou[0, 1].item() == pytest.approx(0.25)
    assert iou[0, 2].item() == pytest.approx(2 / 6)
    torch.testing.assert_close(iou, iou.T)
    torch.testing.assert_close(iou.diagonal(), torch.ones(3))
    # same as box_iou of boxes sharing a centre
    boxes = cxcywh_to_xyxy(torch.cat([torch.full((3, 2), 50.0), wh], dim=1))
    torch.testing.assert_close(iou, box_iou(boxes, boxes))


def test_wh_ratio_metric():
    r = wh_ratio_metric(torch.tensor([[10.0, 10.0]]), torch.tensor([[10.0, 10.0], [20.0, 5.0], [50.0, 10.0]]))
    torch.testing.assert_close(r, torch.tensor([[1.0, 2.0, 5.0]]))
