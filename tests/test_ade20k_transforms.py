"""Joint image / label transforms: the label stays aligned with the pixels through resize, crop
and flip; padding is ignored; crops avoid single-class views; eval keeps the label's size."""
import numpy as np
import torch
from PIL import Image

from maebench.tasks.ade20k.transforms import SegEvalTransform, SegTrainTransform, random_crop_box, rescale_size

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def two_halves(w=48, h=40):
    """Left half red with label 0, right half blue with label 1."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2, 0] = 255
    img[:, w // 2:, 2] = 255
    label = np.zeros((h, w), np.int64)
    label[:, w // 2:] = 1
    return Image.fromarray(img), label


def test_labels_stay_aligned_with_pixels_and_padding_is_ignored():
    torch.manual_seed(0)
    tf = SegTrainTransform(img_size=40, crop_size=32, mean=MEAN, std=STD, ratio_range=(0.5, 2.0),
                           cat_max_ratio=1.0, flip=0.5, photometric=False)
    image, label = two_halves()
    padded = 0
    for _ in range(20):
        x, y = tf(image, label)
        assert x.shape == (3, 32, 32) and y.shape == (32, 32) and y.dtype == torch.long
        redder = x[0] > x[2]
        # away from the class boundary (resampling blends a column or two there) every pixel agrees
        near = np.zeros((32, 32), bool)
        for r, c in zip(*np.nonzero(y[:, 1:].numpy() != y[:, :-1].numpy())):   # change between c and c + 1
            near[r, max(c - 1, 0):c + 3] = True
        for cls, want_red in ((0, True), (1, False)):
            sel = (y == cls) & ~torch.from_numpy(near)
            assert (redder[sel] == want_red).all()
        pad = y == 255
        padded += int(pad.any())
        assert (x[:, pad] == 0).all()                      # padded pixels: 0 after normalising
    assert padded > 0                                      # ratio 0.5 makes 20x24 images: crops are padded


def test_crops_avoid_views_dominated_by_one_class():
    torch.manual_seed(0)
    label = np.zeros((64, 64), np.int64)
    label[:32] = 1                                         # top half class 1
    mixed = 0
    for _ in range(20):
        y0, y1, x0, x1 = random_crop_box(label, 24, ignore_index=255, cat_max_ratio=0.75)
        counts = np.bincount(label[y0:y1, x0:x1].ravel(), minlength=2)
        mixed += int(counts.min() > 0 and counts.max() / counts.sum() < 0.75)
    assert mixed >= 15          # a single random 24 px crop is mixed (25-75%) 11 times in 41


def test_eval_resizes_the_image_to_the_base_scale_and_keeps_the_label():
    assert rescale_size(683, 512, 512) == (683, 512)       # short side 512 already
    assert rescale_size(4000, 500, 512) == (2048, 256)     # the long side is capped at 4 x 512
    image, label = two_halves(w=96, h=80)
    x, y = SegEvalTransform(img_size=40, mean=MEAN, std=STD)(image, label)
    assert x.shape == (3, 40, 48) and torch.equal(y, torch.from_numpy(label))
