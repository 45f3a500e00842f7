"""ovi-bench: a benchmark framework for text-to-image diffusion priors."""

__version__ = "0.1.0"
