"""The options several commands share, defined once (`Annotated` Typer types), so that `--model
--revision --device --dtype --device-map --data --seed --folds …` mean the same and read the same in
every command. Defaults stay in each command's signature (`device: DeviceOpt = "auto"`); options
only one command has stay in that command's module. Torch-free: `itictl --help` imports this.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from itictl.cli import complete

# ---- the model and where it runs ------------------------------------------------------------------
ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", "-m", metavar="MODEL", autocompletion=complete.models,
    help="Model alias, Hub id, model folder or GGUF file (default: the embedded SmolLM2-135M-Instruct).")]
ModelsOpt = Annotated[Optional[str], typer.Option(
    "--model", "-m", metavar="M[,M2]", autocompletion=complete.model_list,
    help="Model alias, Hub id, model folder or GGUF file; comma-separated for several (default: the embedded "
         "SmolLM2-135M-Instruct).")]
RevisionOpt = Annotated[Optional[str], typer.Option(
    "--revision", metavar="REV",
    help="Hub revision (branch, tag or commit) of a Hub --model; resolved to a commit once, which later steps use.")]
DeviceOpt = Annotated[str, typer.Option(
    "--device", metavar="DEVICE",
    help="auto (cuda:0 with one GPU, every GPU with several, else cpu), cpu, cuda or cuda:N.")]
DtypeOpt = Annotated[str, typer.Option(
    "--dtype", metavar="DTYPE",
    help="Compute dtype: auto (float32 on CPU, float16 on a GPU), float32, float16 or bfloat16.")]
DeviceMapOpt = Annotated[Optional[str], typer.Option(
    "--device-map", metavar="MAP",
    help="Spread the model over several devices: auto, balanced, sequential (accelerate) or a JSON "
         "{module: device} object; overrides --device; not with torchrun.")]
ArchMapOpt = Annotated[Optional[str], typer.Option(
    "--arch-map", metavar="JSON",
    help='Where the attention output projections are, for a model itictl does not map by itself (overrides its '
         'table): JSON or a .json file, e.g. {"layers": "model.layers", "o_proj": "self_attn.o_proj", "heads": 32, '
         '"head_dim": 128}; checked with one forward pass. See docs/architectures.md.')]


def with_arch_map(ctx: typer.Context, arch_map: Optional[str]) -> None:
    """Apply --arch-map to every model this command loads (until the command ends)."""
    if arch_map is not None:
        from itictl.models.arch import use_arch_map

        ctx.with_resource(use_arch_map(arch_map))

# ---- data and splits ----------------------------------------------------------------------------
DataOpt = Annotated[Optional[str], typer.Option(
    "--data", metavar="DIR", help="TruthfulQA folder (else $ITICTL_DATA, else the Hub).")]
LimitOpt = Annotated[Optional[int], typer.Option(
    "--limit", "-n", min=1, metavar="N", help="Only the first N prompts of each prompt format (when extracting).")]
SeedOpt = Annotated[int, typer.Option(
    "--seed", help="Seed for the folds, the validation split, tqa_gen_end_q's other question and random directions.")]
FoldsOpt = Annotated[int, typer.Option("--folds", help="Number of question folds (at least 2).")]
FoldOpt = Annotated[int, typer.Option("--fold", help="The test fold (0-based); probes train on the others.")]
AllQuestionsOpt = Annotated[bool, typer.Option(
    "--all-questions", help="Probes on all questions (--val-ratio of them for validation, no test fold; --fold does not "
                            "apply): the final fit bake/push/export ship after an eval.")]


def fold_of(all_questions: bool, fold: int) -> int | None:
    """The probes' test fold: None (all questions) with --all-questions, which takes no --fold."""
    if not all_questions:
        return fold
    if fold != 0:
        from itictl.errors import UsageError

        raise UsageError("--all-questions has no test fold; --fold does not apply", "drop --fold")
    return None


ValRatioOpt = Annotated[float, typer.Option(
    "--val-ratio", help="Share of the training questions held out to rank heads (validation), in (0, 1).")]
SplitOpt = Annotated[Optional[str], typer.Option(
    "--split", metavar="random|contiguous", autocompletion=complete.switch("split"),
    help="Folds: random (seeded shuffle) or contiguous (the reference's np.array_split). Default: the --protocol's.")]

# ---- the protocol and its switches (itictl.protocol; an explicit switch wins over the protocol's value) ----
ProtocolOpt = Annotated[str, typer.Option(
    "--protocol", metavar="itictl|reference", autocompletion=complete.protocol,
    help="itictl (the fixed protocol) or reference (honest_llama's validate_2fold literally: contiguous folds, one "
         "train/val stream, sklearn probes, σ over all questions, argsort ties, reference MC positions; "
         "docs/differences.md). Sets the defaults of --split --val-draw --backend --sigma-from --tie-break "
         "(and eval's --mc-positions).")]
ValDrawOpt = Annotated[Optional[str], typer.Option(
    "--val-draw", metavar="seeded|stream", autocompletion=complete.switch("val_draw"),
    help="Each fold's train/val split: seeded (RandomState(--seed) per fold) or stream (one seeded stream over the "
         "folds in order, the reference). Default: the --protocol's.")]
BackendOpt = Annotated[Optional[str], typer.Option(
    "--backend", metavar="torch|sklearn", autocompletion=complete.switch("backend"),
    help="Probe solver: torch (all heads at once) or sklearn (LogisticRegression(max_iter=1000) per head, the "
         "reference). Default: the --protocol's.")]
SigmaFromOpt = Annotated[Optional[str], typer.Option(
    "--sigma-from", metavar="train|all", autocompletion=complete.switch("sigma_from"),
    help="σ over the tuning activations of the training questions (train) or of every question (all, the "
         "reference's test-fold leak). Default: the --protocol's.")]
TieBreakOpt = Annotated[Optional[str], typer.Option(
    "--tie-break", metavar="lower|argsort", autocompletion=complete.switch("tie_break"),
    help="Heads tied in validation accuracy: the lower (layer, head) first (lower) or np.argsort(acc)[::-1] (argsort, "
         "the reference). Default: the --protocol's.")]

# ---- interventions ------------------------------------------------------------------------------
DirectionOpt = Annotated[str, typer.Option(
    "--direction", autocompletion=complete.direction,
    help="com (mean true − mean false), probe (probe weights) or random (random heads and directions).")]
ShipHeadsOpt = Annotated[Optional[int], typer.Option(
    "--heads", "-K", metavar="K", help="With no REF: the K of the last eval's setting to ship, when it has several "
                                       "(not with a tune).")]
ShipAlphaOpt = Annotated[Optional[float], typer.Option(
    "--alpha", "-A", metavar="ALPHA", help="With no REF: the α of the last eval's setting to ship, when it has several "
                                           "(not with a tune).")]
OpenAIBaseUrlOpt = Annotated[Optional[str], typer.Option(
    "--openai-base-url", metavar="URL", help="OpenAI-compatible server URL (else $OPENAI_BASE_URL).")]


def parse_ints(value: str, flag: str, example: str) -> list[int]:
    """'16, 48' -> [16, 48] (one-line error otherwise)."""
    from itictl.cli.common import split_list
    from itictl.errors import BadInputError

    try:
        return [int(v) for v in split_list(value)]
    except ValueError:
        raise BadInputError(f"{flag} takes integers, got {value!r}", f"e.g. {flag} {example}") from None


def parse_floats(value: str, flag: str, example: str) -> list[float]:
    """'0,5, 15' -> [0.0, 5.0, 15.0] (one-line error otherwise)."""
    from itictl.cli.common import split_list
    from itictl.errors import BadInputError

    try:
        return [float(v) for v in split_list(value)]
    except ValueError:
        raise BadInputError(f"{flag} takes numbers, got {value!r}", f"e.g. {flag} {example}") from None
