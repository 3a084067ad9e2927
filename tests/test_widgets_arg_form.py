"""ArgForm: a tool call's arguments as a form built from the tool's schema, checked before approval."""

from __future__ import annotations

from typing import Literal

from cmdc_nb.kernel import tool
from cmdc_nb.widgets._arg_form import ArgForm, check_args


@tool(requires_approval=True)
def send_report(
    channel: Literal["mail", "chat"],
    copies: int,
    body: str,
    urgent: bool = False,
    ratio: float = 0.5,
    tags: list[str] | None = None,
    limit: int | None = None,
) -> str:
    """Send the weekly report.

    Args:
        channel: where the report goes
        copies: how many copies to send
    """
    return "sent"


PROPOSED = {"channel": "mail", "copies": 2, "body": "Week 12\n- shipped", "tags": ["weekly"]}


def kinds(form: ArgForm) -> dict[str, tuple[str, object]]:
    return {name: (type(f.widget).__name__, f.widget.value) for name, f in form.fields.items()}


def test_each_argument_gets_a_field_of_its_kind_filled_with_the_proposal() -> None:
    form = ArgForm(PROPOSED, send_report.parameters)
    assert kinds(form) == {
        "channel": ("Dropdown", 0),  # the first option, "mail"
        "copies": ("IntText", 2),
        "body": ("Textarea", "Week 12\n- shipped"),  # multi-line text gets room
        "urgent": ("Checkbox", False),  # not proposed: the tool's default
        "ratio": ("FloatText", 0.5),
        "tags": ("Textarea", '[\n  "weekly"\n]'),  # a list is edited as JSON
        "limit": ("Textarea", ""),  # optional, no value: left empty, and not sent
    }
    assert form.fields["channel"].widget.label == '"mail"'
    assert [label for label, _ in form.fields["channel"].widget.options] == ['"mail"', '"chat"']
    label = form.fields["copies"].box.children[0].value
    assert "<b>copies</b>" in label and 'title="required"' in label and "how many copies to send" in label
    assert 'title="required"' not in form.fields["urgent"].box.children[0].value
    assert form.fields["copies"].widget.tooltip == "how many copies to send"
    # untouched, the form gives back exactly what the model proposed: nothing added, nothing changed
    assert form.collect() == PROPOSED


def test_edited_fields_come_back_as_typed_values() -> None:
    form = ArgForm(PROPOSED, send_report.parameters)
    form.fields["channel"].widget.value = 1  # picks "chat"
    form.fields["copies"].widget.value = 5
    form.fields["urgent"].widget.value = True
    form.fields["tags"].widget.value = '["weekly", "team"]'
    form.fields["limit"].widget.value = "10"
    assert form.collect() == {
        "channel": "chat",
        "copies": 5,
        "body": "Week 12\n- shipped",
        "urgent": True,
        "tags": ["weekly", "team"],
        "limit": 10,
    }


def test_invalid_values_are_refused_with_one_sentence_next_to_the_field() -> None:
    form = ArgForm(PROPOSED, send_report.parameters)
    form.fields["limit"].widget.value = '"ten"'
    form.fields["tags"].widget.value = "[weekly"
    assert form.collect() is None
    assert form.fields["tags"].problem.value.startswith('<div class="cmdc-argproblem">tags is not valid JSON')
    assert "cmdc-invalid" in form.fields["tags"].box._dom_classes
    form.fields["tags"].widget.value = '["weekly"]'
    assert form.collect() is None
    assert form.problems == {"limit": 'must be a whole number or null, not "ten"'}
    assert "limit must be a whole number or null, not &quot;ten&quot;" in form.fields["limit"].problem.value
    assert form.fields["tags"].problem.value == ""  # fixed: its sentence is gone
    form.fields["limit"].widget.value = "3"
    assert form.collect() == {**PROPOSED, "limit": 3}


def test_the_json_view_carries_edits_over_and_is_checked_too() -> None:
    form = ArgForm(PROPOSED, send_report.parameters)
    form.fields["copies"].widget.value = 3
    form.json_toggle.value = True  # what the "JSON" toggle's click does
    assert form.fields_box.layout.display == "none" and form.raw.layout.display is None
    assert '"copies": 3' in form.raw.value
    form.raw.value = '{"channel": "fax", "copies": "many", "extra": 1}'
    assert form.collect() is None
    assert form.problems == {
        "channel": 'must be one of "mail", "chat", not "fax"',
        "copies": 'must be a whole number, not "many"',
        "extra": "is not an argument of this tool",
        "body": "is required",
    }
    assert "body is required" in form.message.value  # in the JSON view, the sentences sit under the box
    form.raw.value = '{"channel": "chat", "copies": 1, "body": "short"}'
    form.json_toggle.value = False
    assert kinds(form)["body"] == ("Text", "short") and kinds(form)["copies"] == ("IntText", 1)
    assert form.collect() == {"channel": "chat", "copies": 1, "body": "short"}


def test_text_that_is_not_json_keeps_the_json_view_open() -> None:
    form = ArgForm(PROPOSED, send_report.parameters)
    form.json_toggle.value = True
    form.raw.value = '{"channel": '
    form.json_toggle.value = False
    assert form.json_toggle.value is True and form.raw.layout.display is None
    assert "The arguments are not valid JSON" in form.message.value


def test_a_value_the_schema_does_not_expect_is_shown_as_it_is() -> None:
    form = ArgForm({"channel": "fax", "copies": "two", "body": "x"}, send_report.parameters)
    assert kinds(form)["copies"] == ("Textarea", '"two"')  # not squeezed into a number box
    assert form.fields["channel"].widget.label == '"fax"'
    assert form.collect() is None and set(form.problems) == {"channel", "copies"}


def test_without_a_schema_the_fields_follow_the_values() -> None:
    form = ArgForm({"version": "5", "replicas": 3, "dry_run": True, "hosts": ["a", "b"]})
    assert [kind for kind, _ in kinds(form).values()] == ["Text", "IntText", "Checkbox", "Textarea"]
    form.fields["replicas"].widget.value = 4
    assert form.collect() == {"version": "5", "replicas": 4, "dry_run": True, "hosts": ["a", "b"]}


def test_check_args_says_what_is_wrong_per_argument() -> None:
    assert check_args({"channel": "mail", "copies": 1, "body": ""}, send_report.parameters) == {}
    assert check_args({"channel": "mail", "copies": True}, send_report.parameters) == {
        "copies": "must be a whole number, not true",
        "body": "is required",
    }
    assert check_args(["not", "an", "object"], send_report.parameters) == {
        "": 'The arguments must be one JSON object, such as {"name": "value"}.'
    }
