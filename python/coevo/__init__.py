"""coevo from Python: run scenarios of co-evolving generative models, get polars DataFrames.

The engine is the Rust library (the same code as the ``coevo`` command line); this package
hands it scenarios and gets results back through Arrow, without files in between.

- :func:`run` runs a scenario (a file, RON text, or a dict) and returns a :class:`Result`
  whose ``.metrics`` is the DataFrame of ``metrics.csv``;
- :func:`validate` checks a scenario as a run would and returns it with every default;
- :func:`sweep` runs a list of parameter points (from any design: scipy.stats.qmc, SALib,
  a grid) sequentially or on any ``concurrent.futures`` executor, and returns the table
  ``coevo sweep`` writes as ``sweep.csv``;
- :class:`ScenarioError` is what a scenario that cannot run raises;
- :class:`Model` is the protocol of a conditional model written in Python, which a scenario's
  ``PluginModel`` without ``library`` names and ``run(..., models={name: cls})`` supplies.

Scenarios as dicts have the schema of the RON files, in the JSON form serde gives it (the
form ``manifest.json`` records and :func:`validate` returns): a struct is a dict, a variant
with fields is a one-key dict (``{"TextModel": {"name": "captioner", ...}}``,
``{"Fresh": {"lambda": 0.1}}``), a variant with one value likewise (``{"Isotropic": 0.1}``),
a unit variant its name (``"Unbiased"``). Defaults and validation are those of RON files.

Example::

    import coevo
    result = coevo.run("scenarios/coevolve.ron", replicates=8, rounds=500, seed=1)
    div = result.metrics.filter(metric="gini_simpson")
    print(result.summary["replicates"][0][0]["last"])
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import polars as pl

from . import _native
from ._models import Model

__all__ = ["run", "validate", "sweep", "Result", "ScenarioError", "Scenario", "Model", "__version__"]

__version__: str = _native.__version__

ScenarioError = _native.ScenarioError
ScenarioError.__module__ = "coevo"

#: What the functions accept as a scenario: a path (``str`` ending in ``.ron``, or any
#: ``os.PathLike``), RON source text, or a dict of the scenario's fields.
Scenario = Union[str, "os.PathLike[str]", Mapping[str, Any]]


#: What the native module reads a scenario from: fields by name (its `Source` extracts
#: attributes), and picklable (a module-level namedtuple) for a sweep's worker processes.
_Source = __import__("collections").namedtuple("_Source", "kind text label")


def _source(scenario: Scenario) -> "_Source":
    """The (kind, text, label) triple the native module loads: picklable, so it also goes
    to the worker processes of a sweep. Relative paths inside RON text or a dict (datasets,
    plugins) are relative to the current folder."""
    if isinstance(scenario, Mapping):
        try:
            text = json.dumps(scenario, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ScenarioError(f"<dict>: the scenario is not plain data (dicts, lists, numbers, strings, bools): {e}") from None
        return _Source("json", text, "<dict>")
    if isinstance(scenario, os.PathLike):
        path = os.fspath(scenario)
        return _Source("file", path, path)
    if isinstance(scenario, str):
        looks_like_path = "\n" not in scenario and "(" not in scenario
        if looks_like_path and (scenario.endswith(".ron") or os.path.isfile(scenario)):
            return _Source("file", scenario, scenario)
        return _Source("ron", scenario, "<string>")
    raise TypeError(f"a scenario is a path, RON text or a dict, not {type(scenario).__name__}")


@dataclass
class Result:
    """What :func:`run` returns.

    Attributes:
        metrics: the tidy metrics table, one row per replicate, round, model, text (null for
            model-level metrics) and metric: the columns and values of ``metrics.csv``
            (``replicate, round, model, text, metric, value``). ``.to_pandas()`` away from pandas.
        summary: the run's summary (``summary.json``): per replicate, per model, the initial
            and final diversity, the round it collapsed at, and more.
        manifest: the run's manifest (``manifest.json``): coevo version, scenario and its
            hash, seed, rounds, replicates, resolved initial state.
        out_dir: the output folder written with ``out=``, else ``None``.
        report: the summary as the command line prints it.
    """

    metrics: pl.DataFrame
    summary: dict
    manifest: dict
    out_dir: Optional[str] = None
    report: str = field(default="", repr=False)

    def __str__(self) -> str:
        return self.report


def run(
    scenario: Scenario,
    *,
    seed: Optional[int] = None,
    rounds: Optional[int] = None,
    replicates: Optional[int] = None,
    out: Union[str, "os.PathLike[str]", None] = None,
    force: bool = False,
    threads: Optional[int] = None,
    max_memory: Optional[int] = None,
    models: Optional[Mapping[str, Any]] = None,
) -> Result:
    """Run a scenario and return its metrics, summary and manifest.

    Args:
        scenario: a scenario file (``"scenarios/coevolve.ron"`` or a ``pathlib.Path``), RON
            source text, or a dict with the same fields (see the module's help).
        seed, rounds, replicates: override the scenario's values, as ``coevo run --seed
            --rounds --replicates`` do.
        out: also write the run's usual output folder there (``metrics``, ``aggregate``,
            ``phases.csv``, ``summary.json``, ``manifest.json``), as ``coevo run --out``.
            Without it nothing is written to disk.
        force: overwrite a folder that already holds a run (``--force``).
        threads: worker threads for the replicates (default: one per core). Results do not
            depend on it.
        max_memory: refuse scenarios estimated to need more bytes than this
            (``--max-memory``; default: the memory the system reports available).
        models: conditional models written in Python, by the name a ``PluginModel`` without
            ``library`` gives as its ``model``: ``{"kde": Kde}``, each a class (or factory)
            called once per world as ``Kde(num_texts, params)``; see :class:`Model`.

    Returns:
        A :class:`Result`; ``result.metrics`` equals ``metrics.csv`` of ``coevo run`` on the
        same scenario and seed, value for value.

    Raises:
        ScenarioError: the scenario is invalid (the message is the command line's).
        ValueError: other bad input (an output folder that holds another run, ...).
        RuntimeError: the run failed while running (the rounds before it are in ``out``).
        KeyboardInterrupt: Ctrl-C: the run stopped after its round in flight; the rounds
            written to ``out`` are whole and its manifest says ``interrupted``.

    The GIL is released while the worlds run.
    """
    native = _native.run(
        _source(scenario),
        seed=seed,
        rounds=rounds,
        replicates=replicates,
        out=None if out is None else os.fspath(out),
        force=force,
        threads=threads,
        max_memory=max_memory,
        models=None if models is None else dict(models),
    )
    return Result(
        metrics=pl.DataFrame(native["metrics"]),
        summary=json.loads(native["summary"]),
        manifest=json.loads(native["manifest"]),
        out_dir=native["out_dir"],
        report=native["report"],
    )


def validate(scenario: Scenario, *, max_memory: Optional[int] = None, models: Optional[Mapping[str, Any]] = None) -> dict:
    """Check a scenario as :func:`run` would (parse, validate, read its datasets, check its
    memory and plugins) without running it.

    Returns:
        The scenario as a dict with every default filled in: a valid input of :func:`run`.

    Raises:
        ScenarioError: with the command line's message; ``.path`` is the field path of the
            first problem, ``.line`` and ``.column`` where it is written (files and RON
            text), ``.errors`` every problem.
    """
    return json.loads(_native.validate(_source(scenario), max_memory=max_memory, models=None if models is None else dict(models)))


def _sweep_point(task: tuple) -> str:
    """One point of a sweep (module-level, so that process pools can pickle it): its
    ``sweep.csv`` rows."""
    source, index, values, overrides = task
    return _native.sweep_point(source, index, values, **overrides)


def sweep(
    scenario: Scenario,
    points: Optional[Iterable[Mapping[str, Any]]] = None,
    *,
    executor: Any = None,
    seed: Optional[int] = None,
    rounds: Optional[int] = None,
    replicates: Optional[int] = None,
    threads: Optional[int] = None,
) -> pl.DataFrame:
    """Run a scenario at several parameter points and summarise each, as ``coevo sweep`` does.

    Args:
        scenario: the base scenario (file, RON text or dict).
        points: parameter dicts, one per point, keyed by the parameter paths ``coevo sweep``
            uses (``"painter.covariance"``, ``"captioner.data.lambda"``, ``"seed"``); any
            list works (from ``scipy.stats.qmc``, SALib, a grid). Every point must name the
            same parameters. Default: the points of the scenario's own ``sweep`` section.
        executor: a ``concurrent.futures.Executor`` (``ProcessPoolExecutor``, Dask's,
            ``mpi4py.futures``) whose ``map`` runs the points; default: one after the other
            in this process. Each point is a picklable call of a module-level function.
        seed, rounds, replicates: override the base scenario's values (as ``coevo sweep
            --seed`` etc.). Every point runs with the base seed unless ``seed`` is swept,
            as in ``coevo sweep``.
        threads: worker threads per point (default: one per core).

    Returns:
        The table of ``sweep.csv``: ``point``, a column per parameter, ``status``,
        ``model``, then the summary columns (``final_mean``, ``steady_mean``,
        ``collapsed_fraction``, ...), one row per point and model, in point order; the
        same values as ``coevo sweep`` for the same points and seed.
    """
    source = _source(scenario)
    if points is None:
        parameters, rows = _native.design(source, seed=seed)
        points = [dict(zip(parameters, row)) for row in rows]
    points = [dict(p) for p in points]
    parameters = list(points[0]) if points else []
    for i, p in enumerate(points):
        if list(p) != parameters:
            raise ValueError(f"point {i} has parameters {list(p)}, but point 0 has {parameters}: every point must name the same ones, in the same order")
    overrides = {"seed": seed, "rounds": rounds, "replicates": replicates, "threads": threads}
    tasks = [(source, i, list(p.items()), overrides) for i, p in enumerate(points)]
    mapper = map if executor is None else executor.map
    rows = "".join(mapper(_sweep_point, tasks))
    table = _native.sweep_header(parameters) + rows
    # The rows are the very text `coevo sweep` writes to sweep.csv, so reading them as
    # polars reads that file gives the same columns, types and values.
    import io

    return pl.read_csv(io.StringIO(table))
