"""The two protocols an ITI chain can follow, as bundles of switches (torch-free, no itictl imports
beyond errors, so every layer and the CLI can read it).

- `itictl` (the default): today's fixes.
- `reference`: honest_llama's legacy llama_validate_2fold.py + llama_utils.py, literally, for
  comparing with published numbers.

Each switch can be set on its own; `resolve(protocol, **explicit)` fills the ones left None from
the protocol's bundle (an explicit switch wins). Artifact keys hold a switch only when it differs
from the itictl value (`non_default`), so keys made before the switches existed stay valid.

| switch        | itictl    | reference  | what it does |
|---------------|-----------|------------|--------------|
| split         | random    | contiguous | question folds: seeded shuffle, or np.array_split in order |
| val_draw      | seeded    | stream     | train/val split per fold from RandomState(seed), or one seeded stream in fold order |
| backend       | torch     | sklearn    | probes: batched Newton solver, or LogisticRegression(max_iter=1000) per head |
| sigma_from    | train     | all        | σ over the tuning activations of the training questions, or of every question |
| tie_break     | lower     | argsort    | top-K heads: ties to the lower (layer, head), or np.argsort(acc)[::-1] |
| mc_positions  | answer    | reference  | MC: the answer tokens, or log_probs[3:] after the question, edits from +4 |
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from itictl.errors import BadInputError

PROTOCOLS = ("itictl", "reference")

# switch -> (itictl value, reference value, every value)
SWITCHES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "split": ("random", "contiguous", ("random", "contiguous")),
    "val_draw": ("seeded", "stream", ("seeded", "stream")),
    "backend": ("torch", "sklearn", ("torch", "sklearn")),
    "sigma_from": ("train", "all", ("train", "all")),
    "tie_break": ("lower", "argsort", ("lower", "argsort")),
    "mc_positions": ("answer", "reference", ("answer", "reference")),
}


@dataclass(frozen=True)
class Switches:
    split: str | None
    val_draw: str | None
    backend: str | None
    sigma_from: str | None
    tie_break: str | None
    mc_positions: str | None


def check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise BadInputError(f"unknown --protocol {protocol!r}", f"use one of: {', '.join(PROTOCOLS)}")


def check_switch(name: str, value: str) -> None:
    """One-line error for a value a switch does not take."""
    allowed = SWITCHES[name][2]
    if value not in allowed:
        flag = "--" + name.replace("_", "-")
        raise BadInputError(f"unknown {flag} {value!r}", f"use one of: {', '.join(allowed)}")


def default(protocol: str, name: str) -> str:
    """The value of switch `name` in `protocol`'s bundle."""
    check_protocol(protocol)
    itictl_value, reference_value, _ = SWITCHES[name]
    return reference_value if protocol == "reference" else itictl_value


def resolve(protocol: str = "itictl", *, check: bool = True, **explicit: str | None) -> Switches:
    """Every switch: the explicit value when given (not None), else the protocol's. check=False
    (dataclass construction; their check()/validate() reports bad values later): no errors, and an
    unknown protocol fills nothing."""
    unknown = sorted(set(explicit) - set(SWITCHES))
    if unknown:
        raise TypeError(f"unknown switch(es): {', '.join(unknown)}")
    if check:
        check_protocol(protocol)
    values = {}
    for name in SWITCHES:
        v = explicit.get(name)
        values[name] = default(protocol, name) if v is None and protocol in PROTOCOLS else v
        if check:
            check_switch(name, values[name])
    return Switches(**values)


def non_default(protocol: str, values: dict[str, str]) -> dict[str, str]:
    """For keys: the protocol when not itictl, and each given switch whose value is not itictl's."""
    out = {"protocol": protocol} if protocol != "itictl" else {}
    out.update({k: v for k, v in values.items() if v != SWITCHES[k][0]})
    return out


def as_dict(sw: Switches) -> dict[str, str]:
    return {f.name: getattr(sw, f.name) for f in fields(sw)}
