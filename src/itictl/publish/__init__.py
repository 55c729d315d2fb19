"""Shipping an intervention: bake into a model, export formats, pyvene files, Hub push, model card."""
