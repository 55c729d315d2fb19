"""The intervene step: per-layer shifts from probes (build) and applying them to a live model (steering)."""
