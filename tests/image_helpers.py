"""Small image datasets the tests write."""
import numpy as np
from PIL import Image


def image_folder(root, n_per_class=8, size=16):
    """root/train/<class>/*.png: two classes of random-coloured squares."""
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        d = root / "train" / cls
        d.mkdir(parents=True)
        for i in range(n_per_class):
            img = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            Image.fromarray(img).save(d / f"{i}.png")
    return root
