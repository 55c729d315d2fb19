"""TruthfulQA loading and normalisation, prompt formats, question folds, transfer sets.

Public API (docs/architecture.md "data"; details in docs/data.md).
"""

from itictl.data.folds import question_folds, train_val_split
from itictl.data.prompts import FORMATS, Prompt, build_prompts, prompt_count
from itictl.data.transfer import TransferItem, load_transfer
from itictl.data.truthfulqa import (
                                    NO_COMMENT,
                                    Question,
                                    References,
                                    TruthfulQA,
                                    ensure_dataset,
                                    format_best,
                                    load_truthfulqa,
                                    read_dataset,
                                    split_multi_answer,
)

__all__ = ["FORMATS", "NO_COMMENT", "Prompt", "Question", "References", "TransferItem", "TruthfulQA",
           "build_prompts", "ensure_dataset", "format_best", "load_transfer", "load_truthfulqa", "prompt_count",
           "question_folds", "read_dataset", "split_multi_answer", "train_val_split"]
