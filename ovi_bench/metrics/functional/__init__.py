"""Pure scoring rules: plain values in (detector boxes, VQA probabilities, depth maps, embeddings), scores out; no
model, no files, so each rule is tested on hand-made inputs."""
