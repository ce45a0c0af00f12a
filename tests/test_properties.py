"""Properties over the stack-file reader and the settings loader (#19): whatever an operator's file or
config holds, the answer is settings (and a plan) or one line naming what is wrong; never another
exception, never a traceback. Hypothesis draws the inputs, with a fixed example budget and seed so a run
is repeatable; a failing input is printed by Hypothesis itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from synapse_workers.model.errors import ConfigError
from synapse_workers.model.settings import NAMESPACE, TOP_LEVEL_KEYS, load_settings
from synapse_workers.model.stack_config import PROJECT_DIR, StackFileError, read_stack_file
from synapse_workers.plan import build_plan

PROD, PROD_SECRETS = read_stack_file("prod", PROJECT_DIR / "Pulumi.prod.yaml")
BUDGET = settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

SCALAR_TEXT = st.one_of(
    st.sampled_from(["", "0", "-1", "1e9", "NaN", "inf", "true", "on", "8:20", "0x10", "500m", "2Gi", "9" * 30]),
    st.integers(min_value=-(10**12), max_value=10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=20),
)
JSON_VALUE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10**9), 10**9), st.floats(), st.text(max_size=10)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.one_of(
                st.sampled_from(["replicas", "minReplicas", "resources", "cpu", "enabled", "servers"]),
                st.text(max_size=8),
            ),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=12,
)
VALUE = st.one_of(SCALAR_TEXT, JSON_VALUE.map(json.dumps))
KEY = st.one_of(st.sampled_from([f"{NAMESPACE}:{k}" for k in TOP_LEVEL_KEYS]), st.text(max_size=20))


def one_line(error: Exception) -> None:
    text = str(error)
    assert text and "\n" not in text and "Traceback" not in text, text


@seed(20261201)
@BUDGET
@given(changes=st.dictionaries(KEY, VALUE, max_size=4), dropped=st.sets(st.sampled_from(sorted(PROD)), max_size=2))
def test_any_config_gives_settings_and_a_plan_or_one_config_error_line(
    changes: dict[str, str], dropped: set[str]
) -> None:
    values = {k: v for k, v in PROD.items() if k not in dropped}
    values.update(changes)
    try:
        build_plan(load_settings("prod", values, PROD_SECRETS & set(values)))
    except ConfigError as error:
        one_line(error)
        assert error.stack == "prod"


YAML_NOISE = st.text(
    alphabet=st.sampled_from(list("config:synapse ccu\n-[]{},&*!|>'\"#%@`0123456789.~<")), max_size=120
)


def documents() -> st.SearchStrategy[str]:
    """Stack files: YAML dumped from drawn config (valid ones), and drawn text around a `config:` line."""
    dumped = st.dictionaries(KEY, JSON_VALUE, max_size=4).map(lambda c: yaml.safe_dump({"config": c}))
    noisy = YAML_NOISE.map(lambda noise: "config:\n  synapse:ccu: " + noise)
    return st.one_of(dumped, noisy, YAML_NOISE)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("properties")


@seed(20261201)
@BUDGET
@given(text=documents())
def test_any_stack_file_gives_values_or_one_stack_file_line(folder: Path, text: str) -> None:
    path = folder / "Pulumi.prop.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        values, _ = read_stack_file("prop", path)
    except (StackFileError, ConfigError) as error:
        one_line(error)
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in values.items())


@seed(20261201)
@BUDGET
@given(config=st.dictionaries(st.sampled_from([f"{NAMESPACE}:{k}" for k in TOP_LEVEL_KEYS]), JSON_VALUE, max_size=4))
def test_objects_read_back_as_the_json_they_were(folder: Path, config: dict[str, Any]) -> None:
    """What a file holds as an object reaches the settings as JSON of the same object. Numbers compare as
    numbers: the CLI prints a whole float as Go does (6.9e16 as 69094849186096330), the same value."""
    path = folder / "Pulumi.round.yaml"
    path.write_text(yaml.safe_dump({"config": config}), encoding="utf-8")
    try:
        values, _ = read_stack_file("round", path)
    except (StackFileError, ConfigError) as error:  # a drawn key that names a secret, in plain text
        one_line(error)
        return
    for key, value in config.items():
        if isinstance(value, (dict, list)):
            assert numbers(json.loads(values[key])) == numbers(value)


def numbers(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list):
        return [numbers(v) for v in value]
    return {k: numbers(v) for k, v in value.items()}
