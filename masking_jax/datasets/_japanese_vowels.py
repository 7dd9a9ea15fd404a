"""The Japanese Vowels speaker-recognition data set, shipped compressed with the package.

Source: UCI Machine Learning Repository, "Japanese Vowels" (M. Kudo, J. Toyama,
M. Shimbo, 1999, "Multidimensional Curve Classification Using Passing-Through
Regions", Pattern Recognition Letters 20(11-13):1103-1111), as distributed in the
UEA multivariate time-series classification archive. License: CC BY 4.0.
"""

import lzma
from importlib import resources

import numpy as np

from .._checks import check_choice
from ._ts_format import parse_ts

NUM_CLASSES = 9
NUM_FEATURES = 12


def load_japanese_vowels(split: str = "train") -> tuple[list[np.ndarray], np.ndarray]:
    """Loads one split of Japanese Vowels: 9 speakers saying /ae/, 12 LPC cepstra a frame.

    Args:
      split: "train" (270 utterances, 7 to 26 frames) or "test" (370, 7 to 29 frames).

    Returns:
      `(sequences, labels)`: a list of float32 arrays of shape `(T_i, 12)` and int32
      speaker ids of shape `(B,)` in `[0, 9)` (the file's classes 1..9 minus one).

    Examples:
      >>> sequences, labels = load_japanese_vowels("train")
      >>> len(sequences), sequences[0].shape, labels[:3]
      (270, (20, 12), array([0, 0, 0], dtype=int32))
    """
    check_choice(split, "split", ("train", "test"))
    name = f"JapaneseVowels_{split.upper()}.ts.xz"
    packed = resources.files(__package__).joinpath("data", name).read_bytes()
    sequences, labels = parse_ts(lzma.decompress(packed).decode("utf-8"))
    return sequences, np.array([int(label) - 1 for label in labels], dtype=np.int32)
