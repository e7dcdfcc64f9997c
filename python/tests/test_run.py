"""`coevo.run`: the DataFrame is metrics.csv value for value; files, RON text and dicts give the
same run; the folder written with `out=` is the CLI's."""

import json

import polars as pl
from polars.testing import assert_frame_equal

import coevo
from conftest import cli

# Small enough for a fast suite, large enough that replicates, texts and both kinds of model
# appear: the paper's scenario cut to 30 rounds and 3 replicates.
SCENARIO = "scenarios/coevolve.ron"
SMALL = {"seed": 11, "rounds": 30, "replicates": 3}

# The metrics table's types (those of metrics.parquet); a CSV reader infers signed integers.
TYPES = {"replicate": pl.UInt64, "round": pl.UInt64, "text": pl.UInt64, "value": pl.Float64}


def read_metrics_csv(path):
    return pl.read_csv(path, schema_overrides=TYPES)


def test_metrics_equal_the_cli_metrics_csv(at_root, tmp_path):
    cli("run", SCENARIO, "--out", str(tmp_path / "cli"), "--seed", "11", "--rounds", "30", "--replicates", "3", "--quiet")
    expected = read_metrics_csv(tmp_path / "cli" / "metrics.csv")
    result = coevo.run(SCENARIO, **SMALL)
    assert result.metrics.columns == ["replicate", "round", "model", "text", "metric", "value"]
    assert result.metrics.height == expected.height > 0
    # Exact: metrics.csv writes the shortest representation that reads back to the same f64.
    assert_frame_equal(result.metrics, expected, check_exact=True)
    assert result.out_dir is None


def test_summary_and_manifest_are_the_cli_files(at_root, tmp_path):
    out = tmp_path / "py"
    result = coevo.run(SCENARIO, out=out, **SMALL)
    assert result.out_dir == str(out)
    assert result.summary == json.loads((out / "summary.json").read_text())
    assert result.manifest == json.loads((out / "manifest.json").read_text())
    assert result.manifest["status"] == "complete" and result.manifest["seed"] == 11
    # The folder written beside the in-memory table holds the same rows.
    assert_frame_equal(result.metrics, read_metrics_csv(out / "metrics.csv"), check_exact=True)
    assert "captioner" in str(result)


def test_file_ron_text_and_dict_give_the_same_run(at_root):
    by_file = coevo.run(SCENARIO, **SMALL).metrics
    with open(SCENARIO) as f:
        by_text = coevo.run(f.read(), **SMALL).metrics
    as_dict = coevo.validate(SCENARIO)
    assert as_dict["entities"][0]["TextModel"]["name"] == "captioner"
    by_dict = coevo.run(as_dict, **SMALL).metrics
    assert_frame_equal(by_text, by_file, check_exact=True)
    assert_frame_equal(by_dict, by_file, check_exact=True)


def test_a_hand_written_dict_takes_the_ron_defaults():
    ron = """Scenario(name: "tiny", seed: 5, rounds: 12, replicates: 2, entities: [
        TextModel(name: "captioner", initial: Uniform(4), batch: 50),
        ImageModel(name: "painter", conditioned_on: "captioner", batch: 50),
    ])"""
    as_dict = {
        "name": "tiny",
        "seed": 5,
        "rounds": 12,
        "replicates": 2,
        "entities": [
            {"TextModel": {"name": "captioner", "initial": {"Uniform": 4}, "batch": 50}},
            {"ImageModel": {"name": "painter", "conditioned_on": "captioner", "batch": 50}},
        ],
    }
    assert coevo.validate(as_dict) == coevo.validate(ron)
    assert_frame_equal(coevo.run(as_dict).metrics, coevo.run(ron).metrics, check_exact=True)


def test_to_pandas_is_one_call_away():
    pandas = __import__("pytest").importorskip("pandas")
    frame = coevo.run(SCENARIO_TINY).metrics.to_pandas()
    assert isinstance(frame, pandas.DataFrame)


SCENARIO_TINY = """Scenario(name: "tiny", rounds: 3, entities: [TextModel(name: "t", initial: Uniform(3), batch: 10)])"""


def test_results_do_not_depend_on_the_thread_count():
    one = coevo.run(SCENARIO, threads=1, **SMALL).metrics
    two = coevo.run(SCENARIO, threads=2, **SMALL).metrics
    assert_frame_equal(one, two, check_exact=True)


def test_a_folder_holding_a_run_is_refused_without_force(tmp_path, at_root):
    coevo.run(SCENARIO_TINY, out=tmp_path)
    try:
        coevo.run(SCENARIO_TINY, out=tmp_path)
    except ValueError as e:
        assert "already holds a run; pass --force" in str(e)
    else:
        raise AssertionError("a second run into the same folder must be refused")
    coevo.run(SCENARIO_TINY, out=tmp_path, force=True)


def test_help_shows_the_docstrings():
    assert "metrics.csv" in coevo.run.__doc__
    assert "executor" in coevo.sweep.__doc__
    assert "field path" in coevo.validate.__doc__
    assert ".path" in coevo.ScenarioError.__doc__
