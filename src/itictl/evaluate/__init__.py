"""TruthfulQA evaluation: MC scoring, generation, judges, BLEU/ROUGE, CE/KL, k-fold runner, sweeps.

Modules: presets (prompts), mc, generate, judges, text_metrics, natural_text, runner, sweep, plots.
"""
