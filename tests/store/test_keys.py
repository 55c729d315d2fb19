import math

import pytest

from itictl.errors import BadInputError
from itictl.store.keys import canonical_json, compute_key


def test_same_inputs_same_key():
    a = compute_key("probes", {"folds": 2, "seed": 42}, {"activations": "ab" * 32})
    b = compute_key("probes", {"seed": 42, "folds": 2}, {"activations": "ab" * 32})
    assert a == b and len(a) == 64


@pytest.mark.parametrize("change", [
    dict(kind="intervention"),
    dict(params={"folds": 3, "seed": 42}),
    dict(params={"folds": 2, "seed": 43}),
    dict(params={"folds": 2.0, "seed": 42}),
    dict(parents={"activations": "cd" * 32}),
    dict(parents={"tuning": "ab" * 32}),
    dict(schema_version=2),
    dict(step_version=2),
])
def test_any_change_changes_key(change):
    base = dict(kind="probes", params={"folds": 2, "seed": 42}, parents={"activations": "ab" * 32},
                schema_version=1, step_version=1)
    k0 = compute_key(base["kind"], base["params"], base["parents"], schema_version=1, step_version=1)
    d = {**base, **change}
    k1 = compute_key(d["kind"], d["params"], d["parents"], schema_version=d["schema_version"],
                     step_version=d["step_version"])
    assert k0 != k1


def test_canonical_json_sorted_and_compact():
    assert canonical_json({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_params_rejected(bad):
    with pytest.raises(BadInputError):
        compute_key("intervention", {"alpha": bad})
