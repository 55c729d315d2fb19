"""The probe step: per-head logistic probes on activations, ranked by held-out accuracy (step, heatmap)."""
