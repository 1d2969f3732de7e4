"""RED connect: video consultations for German medical practices."""

__version__ = "0.1.0"
