"""TruthfulQA evaluation: MC scoring, generation, judges, BLEU/ROUGE, CE/KL, k-fold runner, sweeps.

Modules: presets (prompts), mc, generate, text_metrics, natural_text, runner, sweep, plots. The
judges live in itictl.judge (evaluate -> judge).
"""
