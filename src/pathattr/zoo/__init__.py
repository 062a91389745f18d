"""Real models and data that install from PyPI and run offline (DESIGN.md §5)."""

from .digits import digits_cnn, digits_data
from .efficientnet import (
    LITE1_CROP,
    class_name,
    efficientnet_lite0,
    efficientnet_lite1,
    preprocess,
    unpreprocess,
)
from .photos import PHOTOS, photo, photo_batch
from .text import WORD_EMBEDDINGS, minilm, similarity_model
from .tinylm import tiny_lm

__all__ = [
    "LITE1_CROP", "PHOTOS", "WORD_EMBEDDINGS", "class_name", "digits_cnn", "digits_data",
    "efficientnet_lite0", "efficientnet_lite1", "minilm", "photo", "photo_batch", "preprocess",
    "similarity_model", "tiny_lm", "unpreprocess",
]
