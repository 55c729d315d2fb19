"""The options several commands share, defined once (`Annotated` Typer types), so that `--model
--revision --device --dtype --device-map --data --seed --folds …` mean the same and read the same in
every command. Defaults stay in each command's signature (`device: DeviceOpt = "auto"`); options
only one command has stay in that command's module. Torch-free: `itictl --help` imports this.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

# ---- the model and where it runs ------------------------------------------------------------------
ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", "-m", metavar="MODEL",
    help="Model alias, Hub id, model folder or GGUF file (default: the embedded SmolLM2-135M-Instruct).")]
ModelsOpt = Annotated[Optional[str], typer.Option(
    "--model", "-m", metavar="M[,M2]",
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
ValRatioOpt = Annotated[float, typer.Option(
    "--val-ratio", help="Share of the training questions held out to rank heads (validation), in (0, 1).")]
SplitOpt = Annotated[str, typer.Option(
    "--split", help="Folds: random (seeded shuffle) or contiguous (the reference's np.array_split).")]

# ---- interventions ------------------------------------------------------------------------------
DirectionOpt = Annotated[str, typer.Option(
    "--direction", help="com (mean true − mean false), probe (probe weights) or random (random heads and directions).")]
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
