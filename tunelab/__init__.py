"""tunelab: adapt pretrained language models to your own task."""

__version__ = "0.1.0"
