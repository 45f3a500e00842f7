"""Embedding banks: CLIP image embeddings of real images, and what the OVI constraints and the diagnostics need.

A bank holds the image embeddings of a set of real images, made by ONE image encoder (the vision tower of an embedding
space's towers: Kandinsky 2.2's CLIP ViT-bigG/14, a CLIPModel of another space, or "tiny"), and records its space;
OVI's constraints and the embedding diagnostics compare a prior's embeddings with them.
Modules, in import order (each imports only those before it):

* `statistics`: `BankStatistics`, mean and Ledoit–Wolf shrunk covariance, for the Mahalanobis distance;
* `neighbours`: `nearest_neighbours`, exact top-k by cosine, scanning the bank in chunks;
* `folder`: the bank folder's format, and `EmbeddingBank`, which reads a finished one;
* `sources`: the images a bank is built from (`ImageFiles`, `HFDatasetImages`);
* `build`: `build_bank`, encoding a source into a bank folder and resuming a killed build;
* `tiny`: the tiny bank for tests and the smoke run, and `resolve_bank` / `bank_needs` for a bank reference.

Import from the module that defines a name; this package re-exports nothing, so that reading a bank's statistics
never imports the build code.
"""
