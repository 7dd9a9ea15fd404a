"""Data sets shipped with the package."""

from ._japanese_vowels import load_japanese_vowels as load_japanese_vowels
