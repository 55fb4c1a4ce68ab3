"""ImageNet-style image folders (``root/<class>/<image>``), e.g. the ImageNet validation set sorted by synset."""

from __future__ import annotations

from pathlib import Path

import torch

from art_ext.data.base import LabeledImages

#: ImageNet per-channel statistics (torchvision / locuslab/smoothing), for a model's normalization layer
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_image_folder(
    root: str | Path,
    *,
    resize: int = 256,
    crop: int = 224,
    skip: int = 1,
    limit: int | None = None,
) -> LabeledImages:
    """Images of an ``ImageFolder`` tree as ``LabeledImages`` (x float32 [N, 3, crop, crop] in [0, 1]).

    Class indices follow sorted folder names (for the 1,000 ImageNet synsets this is the standard label order).
    Preprocessing is the standard evaluation transform: resize the short side to ``resize``, center-crop ``crop``;
    no normalization (that belongs to the model).

    Args:
        root: Folder with one sub-folder per class.
        skip: Keep every ``skip``-th image (Cohen et al. certify ImageNet with ``--skip 100``: 500 images).
        limit: Keep at most ``limit`` images after skipping.
    """
    from torchvision import datasets, transforms

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist; expected root/<class>/<image files>")
    if skip < 1:
        raise ValueError(f"skip must be >= 1, got {skip}")
    transform = transforms.Compose([transforms.Resize(resize), transforms.CenterCrop(crop), transforms.ToTensor()])
    folder = datasets.ImageFolder(str(root), transform=transform)
    indices = list(range(0, len(folder), skip))
    if limit is not None:
        indices = indices[:limit]
    if not indices:
        raise ValueError(f"no images selected from {root} (found {len(folder)}, skip={skip}, limit={limit})")
    xs, ys = zip(*(folder[i] for i in indices), strict=True)
    return LabeledImages(
        torch.stack(xs), torch.tensor(ys, dtype=torch.int64), tuple(folder.classes), f"{root.name}/folder"
    )
