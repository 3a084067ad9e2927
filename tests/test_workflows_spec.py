"""Workflow specs: every malformed spec is refused with a message that names the problem exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cmdc_nb import workflows as wf
from cmdc_nb.errors import InvalidInputError, WorkflowError, WorkflowSpecError
from cmdc_nb.workflows.templates import render, step_references


def double(x: int) -> int:
    return 2 * x


def fn_step(sid: str, *deps: str, **config: object) -> dict[str, object]:
    return {"id": sid, "type": "python", "depends_on": list(deps), "config": {"function": "m:f", **config}}


def problems(raw: dict[str, object]) -> list[str]:
    with pytest.raises(WorkflowSpecError) as err:
        wf.parse_spec(raw)
    return err.value.problems


def test_a_valid_spec_round_trips_through_its_mapping() -> None:
    spec = wf.parse_spec(
        {
            "name": "Review",
            "steps": [
                wf.step("fetch", fn=double, args={"x": "{{ input.n }}"}, retries=2, timeout=5),
                wf.step("review", "agent_call", depends_on="fetch", prompt="{{ steps.fetch.output }}"),
                wf.step("post", "approval", depends_on="review", title="Post it?"),
            ],
        }
    )
    assert spec.order() == ["fetch", "review", "post"]
    assert spec.step("fetch").config["function"] == f"{__name__}:double"
    assert spec.step("fetch").retry.attempts == 3
    assert wf.parse_spec(spec.as_dict()) == spec


def test_duplicate_ids_unknown_dependencies_and_cycles_are_all_reported_at_once() -> None:
    found = problems(
        {
            "name": "bad",
            "steps": [
                fn_step("a", "c"),
                fn_step("b", "a"),
                fn_step("c", "b"),
                fn_step("a"),
                fn_step("d", "nowhere"),
            ],
        }
    )
    assert "duplicate step id 'a' (steps[0] and steps[3])" in found
    assert "step 'd' depends on unknown step 'nowhere'" in found
    assert "dependency cycle: a → b → c → a" in found


def test_a_step_depending_on_itself_is_a_cycle() -> None:
    assert problems({"name": "x", "steps": [fn_step("loop", "loop")]}) == ["dependency cycle: loop → loop"]


def test_templates_may_only_read_steps_they_depend_on() -> None:
    found = problems(
        {
            "name": "x",
            "steps": [
                fn_step("a"),
                fn_step("b", args={"v": "{{ steps.a.output }}"}),
                fn_step("c", "a", args={"v": "{{ steps['ghost'].output }}"}),
            ],
        }
    )
    assert found == [
        "step 'b' reads steps.a but does not depend on 'a' (directly or indirectly)",
        "step 'c' reads steps.ghost, which does not exist",
    ]


def test_config_keys_types_and_options_are_checked() -> None:
    found = problems(
        {
            "name": "x",
            "stepz": [],
            "steps": [
                {"id": "1bad"},
                {"id": "t", "type": "teleport"},
                {"id": "p", "type": "python", "config": {}, "retries": {"attempts": 0}, "timeout": -1},
                {
                    "id": "s",
                    "type": "shell",
                    "config": {"command": "true"},
                    "transactional": True,
                    "colour": 1,
                },
                {"id": "c", "type": "condition", "config": {"if": "{{ true }}", "then": ["p"]}},
            ],
        }
    )
    assert any(p.startswith("unknown key(s) 'stepz'") for p in found)
    assert any(p.startswith("steps[0]: id '1bad' must start with a letter") for p in found)
    assert any(p.startswith("step 't': type 'teleport' is not one of:") for p in found)
    assert "step 'p': a python step needs config.function" in found
    assert "step 'p': retries.attempts must be an integer ≥ 1, got 0" in found
    assert "step 'p': timeout must be a number ≥ 0.001, got -1" in found
    assert "step 's': only python steps can be transactional" in found
    assert any(p.startswith("step 's': unknown key(s) 'colour'") for p in found)
    assert "step 'c': then step 'p' must depend on 'c'" in found


def test_input_schema_must_be_a_valid_json_schema() -> None:
    found = problems({"name": "x", "input_schema": {"type": "objekt"}, "steps": [fn_step("a")]})
    assert len(found) == 1 and found[0].startswith("input_schema is not a valid JSON Schema")


def test_a_lambda_cannot_be_a_step_function_but_a_registered_function_can() -> None:
    with pytest.raises(WorkflowSpecError, match="cannot be found again by name"):
        wf.step("a", fn=lambda: 1)
    wf.register_step_function("tests.triple", lambda x: 3 * x)
    assert wf.parse_spec({"name": "x", "steps": [wf.step("a", fn="tests.triple")]}).steps[0].config == {
        "function": "tests.triple"
    }


def test_specs_load_from_yaml_json_and_files(tmp_path: Path) -> None:
    yaml_text = """
name: From YAML
steps:
  - {id: a, type: transform, config: {value: "{{ input.x }}"}}
  - {id: b, type: transform, depends_on: [a], config: {value: "{{ steps.a.output }}!"}}
"""
    spec = wf.load_spec(yaml_text)
    assert [s.id for s in spec.steps] == ["a", "b"]
    path = tmp_path / "flow.json"
    path.write_text(json.dumps(spec.as_dict()))
    assert wf.load_spec(path) == spec
    assert wf.load_spec(str(path)) == spec
    with pytest.raises(WorkflowSpecError, match="neither JSON nor YAML"):
        wf.load_spec("name: [unclosed\n  - x")
    with pytest.raises(InvalidInputError, match="no such file"):
        wf.load_spec(tmp_path / "missing.yaml")


def test_templates_keep_native_values_and_refuse_unsafe_or_undefined_names() -> None:
    ctx = {"input": {"n": 3, "tags": ["a"]}, "steps": {"s": {"output": {"k": [1, 2]}}}}
    assert render("{{ input.n }}", ctx, step_id="x") == 3
    assert render({"v": ["{{ steps.s.output }}"]}, ctx, step_id="x") == {"v": [{"k": [1, 2]}]}
    assert render("n={{ input.n }}", ctx, step_id="x") == "n=3"
    with pytest.raises(WorkflowError, match=r"step 'x': config.q: 'dict object' has no attribute 'missing'"):
        render({"q": "{{ input.missing }}"}, ctx, step_id="x")
    with pytest.raises(WorkflowError, match=r"unsafe|not safely"):
        render("{{ input.tags.append(1) }}", ctx, step_id="x")
    with pytest.raises(WorkflowError):
        render("{{ ''.__class__.__mro__ }}", ctx, step_id="x")
    assert step_references({"a": "{{ steps.one.output + steps['two'].output }}", "b": ["{{ input.x }}"]}) == (
        {"one", "two"},
        [],
    )


def test_a_cycle_does_not_hide_the_other_problems() -> None:
    found = problems(
        {
            "name": "x",
            "steps": [
                fn_step("fetch"),
                fn_step("lint", "fetch", "tests"),
                fn_step("tests", "lint", args={"v": "{{ steps.lint.output }}"}),
                fn_step("review", "fetch", args={"v": "{{ steps.lint.output }}"}),
                fn_step("post", "reviw", args={"v": "{{ steps.ghost.output }}"}),
            ],
        }
    )
    # every problem, in one error; the step on the cycle that reads another step on it is not blamed
    assert found == [
        "step 'post' depends on unknown step 'reviw'",
        "dependency cycle: lint → tests → lint",
        "step 'review' reads steps.lint but does not depend on 'lint' (directly or indirectly)",
        "step 'post' reads steps.ghost, which does not exist",
    ]


def test_a_step_on_a_cycle_reading_itself_is_only_the_cycle() -> None:
    found = problems({"name": "x", "steps": [fn_step("loop", "loop", args={"v": "{{ steps.loop.output }}"})]})
    assert found == ["dependency cycle: loop → loop"]
