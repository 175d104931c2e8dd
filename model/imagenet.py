"""ImageNet-1k class labels from installed packages (Debian opencv-doc ships them), for sanity checks."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

LABEL_FILES = (
    Path(os.environ.get("OPENCV_DOC_DATA", "/usr/share/doc/opencv-doc/examples/data"))
    / "dnn"
    / "classification_classes_ILSVRC2012.txt",
    Path("/usr/share/darknet/data/imagenet.shortnames.list"),
)


@lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 class names in the standard index order (index → ``"tabby, tabby cat"``)."""
    for path in LABEL_FILES:
        if path.exists():
            labels = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
            if len(labels) == 1000:
                return labels
    raise FileNotFoundError(
        "ImageNet labels not found: install the Debian package opencv-doc (looked in "
        + ", ".join(str(p) for p in LABEL_FILES)
        + ")"
    )
