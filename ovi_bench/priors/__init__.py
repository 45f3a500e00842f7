"""Priors: text in, CLIP image embedding out. `base` holds the seam; one module per prior family, with the OVI
family's shared optimisation in `ovi`."""
