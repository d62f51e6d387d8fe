"""Graph-level fusions done in PyTorch before export: BatchNorm folding and RepVGG-style branch merging."""
