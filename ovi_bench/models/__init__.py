"""Model loading, one module per model family, each with the tiny random-weight builder that mirrors its real loader.

* `hub`: references (hub id, local folder, tiny name) -> `from_pretrained`, loud errors, the remote-code policy.
* `clip`: the CLIP image and text towers and their one preprocessing definition (every CLIP embedding goes through it).
* `kandinsky`: the Kandinsky 2.2 prior and decoder, and the zero-image embedding of its image encoder.
* `zero_image`: what identifies a saved CLIP vision tower, and its cached zero-image embedding.
* `towers`: the CLIP text and vision towers of an embedding space (Kandinsky 2.2 prior or CLIPModel layout), and
  comparing two saved vision towers from their weights (`ovi-bench spaces check`).
* `ip_adapter`: SDXL and SD 1.5 base pipelines with an IP-Adapter loaded through `load_ip_adapter`, and their tiny
  pipelines and adapter checkpoints.
* `eclipse`: ECLIPSE's prior checkpoint (model class, telling its checkpoints apart).
* `dinov2`, `inception`: the other feature spaces of fid/kid/cmmd.
* `aesthetic`: the LAION aesthetic predictor's MLP. `instructblip`, `llava`: the VQAScore models.
* `evaluators/`: the T2I-CompBench++ evaluator wrappers (BLIP VQA, detectors, depth).
"""
