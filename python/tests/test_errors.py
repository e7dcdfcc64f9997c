"""Bad input raises `coevo.ScenarioError` with the command line's message: every scenario
fixture the CLI tests use (tests/fixtures/*.ron and tests/fixtures/errors/*.ron) is validated
by `coevo validate` and by `coevo.validate`, and the two must agree (same message, or both
accept it). Dicts are answered with the same validation texts, at field paths."""

import pathlib

import pytest

import coevo
from conftest import ROOT, cli

FIXTURES = sorted(
    str(p.relative_to(ROOT)) for p in [*ROOT.glob("tests/fixtures/*.ron"), *ROOT.glob("tests/fixtures/errors/*.ron")]
)


def test_the_fixtures_are_found():
    assert len(FIXTURES) >= 30, FIXTURES


@pytest.mark.parametrize("fixture", FIXTURES)
def test_every_fixture_is_answered_as_the_cli_answers_it(fixture, at_root):
    done = cli("validate", fixture, check=False)
    if done.returncode == 0:
        coevo.validate(fixture)
        return
    assert done.returncode == 2, done.stderr
    with pytest.raises(coevo.ScenarioError) as raised:
        coevo.validate(fixture)
    e = raised.value
    assert str(e) == done.stderr.rstrip("\n")
    assert e.file == fixture
    assert e.errors and e.errors[0]["message"]
    # A syntax error has a place and no field path; a semantic one a field path, and a place
    # when the field is written in the file.
    assert e.line is not None or e.path is not None, e.errors


def test_a_syntax_error_has_line_and_column(at_root):
    with pytest.raises(coevo.ScenarioError) as raised:
        coevo.validate("tests/fixtures/malformed.ron")
    assert raised.value.line >= 1 and raised.value.column >= 1
    assert str(raised.value).startswith(f"error: tests/fixtures/malformed.ron:{raised.value.line}:{raised.value.column}: ")


def tiny(**text_model):
    model = {"name": "captioner", "initial": {"Uniform": 4}, "batch": 50, **text_model}
    return {"name": "tiny", "rounds": 5, "entities": [{"TextModel": model}]}


def test_a_dict_error_names_the_field_path_with_the_ron_message():
    ron = 'Scenario(name: "tiny", rounds: 5, entities: [TextModel(name: "captioner", initial: Uniform(4), batch: 0)])'
    with pytest.raises(coevo.ScenarioError) as from_ron:
        coevo.validate(ron)
    with pytest.raises(coevo.ScenarioError) as from_dict:
        coevo.validate(tiny(batch=0))
    assert from_dict.value.path == 'entities[0] (TextModel "captioner").batch' == from_ron.value.path
    assert from_dict.value.line is None
    # The same text after the place: `<dict>: PATH: MESSAGE` against `<string>:L:C: PATH: MESSAGE`.
    assert str(from_dict.value).split(": ", 1)[1] == str(from_ron.value).split(": ", 2)[2]


def test_a_dict_value_that_does_not_fit_names_its_path():
    with pytest.raises(coevo.ScenarioError) as raised:
        coevo.validate(tiny(batch=-3))
    assert raised.value.path == "entities[0].TextModel.batch"
    assert "invalid value" in str(raised.value)
    with pytest.raises(coevo.ScenarioError) as raised:
        coevo.validate(tiny(colour="red"))
    assert "unknown field `colour`" in str(raised.value)


def test_something_that_is_no_scenario_is_a_type_error():
    with pytest.raises(TypeError):
        coevo.validate(42)


def test_a_missing_file_is_a_scenario_error(tmp_path):
    missing = pathlib.Path(tmp_path) / "nope.ron"
    with pytest.raises(coevo.ScenarioError) as raised:
        coevo.validate(missing)
    assert "cannot read scenario" in str(raised.value)
