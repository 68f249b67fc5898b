"""ADE20K metrics and inference: a hand-computed confusion matrix, and sliding windows that agree
with whole-image inference."""
import math

import pytest
import torch

from maebench.tasks.ade20k.evaluate import confusion_matrix, evaluate, segmentation_metrics, slide_inference

IGN = 255


def test_metrics_match_a_hand_computation_with_ignored_pixels_and_an_absent_class():
    # 4 classes; class 3 appears in neither labels nor predictions; class 2 is predicted but never labelled
    label = torch.tensor([[0, 0, 1, 1],
                          [0, IGN, 1, IGN]])
    pred = torch.tensor([[0, 1, 1, 2],
                         [0, 3, 1, 0]])        # the two ignored pixels predict 3 and 0: must not count
    cm = confusion_matrix(pred, label, num_classes=4, ignore_index=IGN)
    assert cm.tolist() == [[2, 1, 0, 0],        # class 0: 3 pixels, 2 right, 1 called 1
                           [0, 2, 1, 0],        # class 1: 3 pixels, 2 right, 1 called 2
                           [0, 0, 0, 0],
                           [0, 0, 0, 0]]
    m = segmentation_metrics(cm)
    # IoU0 = 2 / (3 + 2 - 2) = 2/3; IoU1 = 2 / (3 + 3 - 2) = 1/2; IoU2 = 0 / 1 = 0; IoU3 undefined
    assert m["per_class_iou"][:3] == pytest.approx([200 / 3, 50.0, 0.0])
    assert m["per_class_iou"][3] is None
    assert m["mIoU"] == pytest.approx(100 * (2 / 3 + 1 / 2 + 0) / 3)
    assert m["mAcc"] == pytest.approx(100 * (2 / 3 + 2 / 3) / 2)   # over classes present in the labels
    assert m["aAcc"] == pytest.approx(100 * 4 / 6)                  # ignored pixels count nowhere


def test_confusion_matrices_add_up_over_images():
    """One matrix over the split, not a mean of per-image scores: a small image weighs less."""
    big = (torch.zeros(10, 10, dtype=torch.long), torch.zeros(10, 10, dtype=torch.long))   # all right
    small = (torch.ones(1, 1, dtype=torch.long), torch.zeros(1, 1, dtype=torch.long))      # all wrong
    cm = sum(confusion_matrix(p, l, 2, IGN) for p, l in (big, small))
    m = segmentation_metrics(cm)
    assert m["aAcc"] == pytest.approx(100 * 100 / 101)
    assert m["per_class_iou"] == pytest.approx([100 * 100 / 101, 0.0])


def test_empty_split_gives_nan_not_an_error():
    m = segmentation_metrics(torch.zeros(3, 3, dtype=torch.long))
    assert math.isnan(m["mIoU"]) and math.isnan(m["aAcc"]) and m["per_class_iou"] == [None] * 3


class Conv(torch.nn.Module):
    """A stand-in segmentor with context (a 5x5 conv): windows see different neighbourhoods."""

    def __init__(self, k=5):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, k, padding=k // 2)
        self.calls = []

    def predict(self, x):
        self.calls.append(tuple(x.shape[-2:]))
        return self.conv(x)


def test_sliding_window_equals_whole_image_when_the_window_covers_it():
    model, img = Conv(), torch.randn(2, 3, 20, 28)
    whole = model.predict(img)
    model.calls.clear()
    slide = slide_inference(model.predict, img, num_classes=4, crop=32, stride=21)
    assert model.calls == [(20, 28)]            # one window, clipped to the image
    torch.testing.assert_close(slide, whole, rtol=0, atol=0)


def test_sliding_windows_tile_the_image_and_average_overlaps():
    model, img = Conv(k=1), torch.randn(1, 3, 40, 50)    # 1x1 conv: per-pixel, so any tiling is exact
    slide = slide_inference(model.predict, img, num_classes=4, crop=16, stride=10)
    # rows: ceil((40 - 16) / 10) + 1 = 4 windows, cols: ceil((50 - 16) / 10) + 1 = 5, last ones flush
    assert len(model.calls) == 20 and set(model.calls) == {(16, 16)}
    torch.testing.assert_close(slide, model.predict(img), rtol=1e-6, atol=1e-6)
    context = Conv(k=5)
    assert not torch.allclose(slide_inference(context.predict, img, 4, 16, 10), context.predict(img), atol=1e-4)


class Oracle(torch.nn.Module):
    """Predicts class = round(first channel) at any resolution: checks the eval loop's resizing."""

    def predict(self, x):
        return torch.nn.functional.one_hot(x[:, 0].round().long().clamp(0, 2), 3).permute(0, 3, 1, 2).float()


def test_evaluate_scores_at_the_label_resolution():
    label = torch.tensor([[0, 0, 1, 1], [0, 0, IGN, 1], [2, 2, 1, 1], [2, 2, 1, 1]])
    image = torch.zeros(3, 2, 2)                   # the image was downscaled 2x by the eval transform
    image[0] = torch.tensor([[0.0, 1.0], [2.0, 1.0]])
    m = evaluate(Oracle(), [(image, label)], num_classes=3, ignore_index=IGN, device=torch.device("cpu"),
                 mode="whole")
    assert m["aAcc"] == pytest.approx(100.0) and m["mIoU"] == pytest.approx(100.0)
    m = evaluate(Oracle(), [(image, label)], num_classes=3, ignore_index=IGN, device=torch.device("cpu"),
                 mode="slide", crop=1, stride=1)
    assert m["mIoU"] == pytest.approx(100.0)
