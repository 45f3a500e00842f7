"""Decoders: image embeddings in, images out. `base` holds the seam; one module per decoder family."""
