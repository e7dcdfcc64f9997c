"""Conditional models written in Python: the protocol (:class:`Model`) and the adapter coevo
calls them through.

A scenario names such a model with a ``PluginModel`` that has no ``library``; the program
supplies it by name (``coevo.run(scenario, models={"kde": Kde})``). coevo calls the class (or
any factory) once per world as ``Kde(num_texts, params)`` and then calls the instance's methods
with numpy arrays. The adapter below turns coevo's flat buffers into arrays and back, checks
every shape and value the model returns, and turns an exception into one line naming it and
where it was raised, which coevo reports like a plugin's error (entity, call, round).

Why an adapter in Python: shapes are checked and reported in the terms the model's author
wrote (``(sum(counts), dim)``), and the Rust side only moves bytes.
"""

from __future__ import annotations

import json
import traceback
from typing import Any, Callable, Mapping

try:
    import numpy as np
except ImportError:  # numpy is needed only by models written in Python
    np = None  # type: ignore[assignment]

__all__ = ["Model"]


class Model:
    """Base class of a conditional model written in Python (optional: any object with these
    methods and attributes works).

    A conditional model holds one distribution ``q(y | i)`` per text ``i`` of the text model
    it is conditioned on. coevo creates it once per world as ``cls(num_texts, params)``
    (``params``: the scenario's ``params`` dict, default ``{}``), then calls:

    - ``sample(counts, temperature, rng)``: ``counts[i]`` samples of text ``i`` for every
      ``i``, grouped by text in text order: an array of shape ``(sum(counts), dim)``;
      ``temperature`` scales the dispersion (1 = the model itself);
    - ``sample_initial(counts, rng)``: the same from the *initial* conditionals (the source of
      real data under ``data: Fresh(lambda)``);
    - ``log_likelihood(samples)``: ``log q(y_j | i)`` for every row ``y_j`` of ``samples``
      (shape ``(n, dim)``) and text ``i``: shape ``(n, num_texts)``; ``-inf`` is allowed,
      NaN and ``+inf`` are not;
    - ``fit(counts, samples)``: refit on a batch grouped by caption as ``sample`` returns it;
    - ``metrics()``: per-text metrics, ``{name: array of num_texts values}``; one of them is
      named by ``diversity_metric`` (coevo's coupling metrics, the p-weighted mean and the
      Matthew index, are computed from it);
    - optionally ``add_text()`` (a ``NewText`` corpus injection adds a text), and
      ``get_state() -> 1-d array`` with ``set_state(state)`` (checkpoints; without them
      ``--checkpoint-every`` is refused for the scenario).

    ``counts`` is an int64 array of ``num_texts`` values; ``samples`` are float64 arrays.

    **Random numbers**: draw them only from ``rng``, the ``numpy.random.Generator`` coevo
    hands to ``sample`` and ``sample_initial`` (seeded from the entity's own coevo stream at
    each call), never from ``np.random`` or another generator: then the same scenario and seed
    give the same results, whatever the thread count. ``fit`` gets no generator: it must be
    deterministic.

    Attributes:
        dim: dimension of one sample (set it in ``__init__``).
        modality: what the model generates (default ``"image"``).
        diversity_metric: the per-text metric that measures diversity (default ``"trace"``).
    """

    dim: int
    modality: str = "image"
    diversity_metric: str = "trace"

    def __init__(self, num_texts: int, params: Mapping[str, Any]) -> None:
        self.num_texts = num_texts
        self.params = dict(params)

    def sample(self, counts: np.ndarray, temperature: float, rng: np.random.Generator) -> np.ndarray:
        """``sum(counts) x dim`` samples, ``counts[i]`` of text ``i``, in text order."""
        raise NotImplementedError

    def sample_initial(self, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Like :meth:`sample`, from the initial conditionals, at temperature 1."""
        raise NotImplementedError

    def log_likelihood(self, samples: np.ndarray) -> np.ndarray:
        """``(n, num_texts)``: ``log q(samples[j] | i)``."""
        raise NotImplementedError

    def fit(self, counts: np.ndarray, samples: np.ndarray) -> None:
        """Refit on ``samples`` grouped by caption (``counts[i]`` rows of text ``i``)."""
        raise NotImplementedError

    def metrics(self) -> Mapping[str, np.ndarray]:
        """``{name: array of num_texts values}``, including ``diversity_metric``."""
        raise NotImplementedError


def _failure(call: str, e: BaseException) -> RuntimeError:
    """One line for coevo's error report: the exception as the traceback's last line shows it,
    and the innermost place it was raised."""
    line = traceback.format_exception_only(type(e), e)[-1].strip()
    frames = traceback.extract_tb(e.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    return RuntimeError(f"{line}{where}")


class _Hosted:
    """What the native module calls: one user model, with coevo's buffers turned into arrays
    and every returned array checked. Each method returns bytes (float64, native byte order)
    or raises ``RuntimeError`` with the one line coevo reports."""

    def __init__(self, factory: Callable[..., Any], num_texts: int, params_json: str, model: str) -> None:
        if np is None:
            raise RuntimeError("models written in Python need numpy: pip install numpy")
        params = json.loads(params_json)
        try:
            self.model = factory(num_texts, params)
        except Exception as e:  # noqa: BLE001 - any failure of user code is reported, not crashed on
            raise _failure("create", e) from e
        self.name = model
        self.num_texts = num_texts
        dim = getattr(self.model, "dim", None)
        if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or dim < 1:
            raise RuntimeError(f"the model's `dim` attribute must be a positive int, not {dim!r}")
        self.dim = int(dim)
        self.modality = str(getattr(self.model, "modality", "image"))
        self.diversity_metric = str(getattr(self.model, "diversity_metric", "trace"))

    def _call(self, call: str, *args: Any) -> Any:
        method = getattr(self.model, call, None)
        if method is None:
            raise RuntimeError(f"the model has no `{call}` method")
        try:
            return method(*args)
        except Exception as e:  # noqa: BLE001
            raise _failure(call, e) from e

    def _rows(self, call: str, value: Any, n: int, width: int, what: str) -> bytes:
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise RuntimeError(f"returned {type(value).__name__}, not an array of numbers: {e}") from None
        if array.shape != (n, width) and not (n == 0 and array.size == 0):
            raise RuntimeError(f"returned an array of shape {array.shape}; expected ({n}, {width}): {what}")
        return np.ascontiguousarray(array).tobytes()

    def _counts(self, counts: list) -> np.ndarray:
        return np.asarray(counts, dtype=np.int64)

    def sample(self, counts: list, temperature: float, seed: int) -> bytes:
        c = self._counts(counts)
        y = self._call("sample", c, temperature, np.random.default_rng(seed))
        return self._finite("sample", self._rows("sample", y, int(c.sum()), self.dim, "sum(counts) x dim"))

    def sample_initial(self, counts: list, seed: int) -> bytes:
        c = self._counts(counts)
        y = self._call("sample_initial", c, np.random.default_rng(seed))
        return self._finite("sample_initial", self._rows("sample_initial", y, int(c.sum()), self.dim, "sum(counts) x dim"))

    def _finite(self, call: str, data: bytes) -> bytes:
        if not np.isfinite(np.frombuffer(data, dtype=np.float64)).all():
            raise RuntimeError("returned NaN or infinite samples")
        return data

    def log_likelihood(self, samples: bytes) -> bytes:
        y = np.frombuffer(samples, dtype=np.float64).reshape(-1, self.dim)
        ll = self._call("log_likelihood", y)
        data = self._rows("log_likelihood", ll, y.shape[0], self.num_texts, "one row per sample, one column per text (n x K)")
        values = np.frombuffer(data, dtype=np.float64)
        if np.isnan(values).any() or (values == np.inf).any():
            raise RuntimeError("returned NaN or +inf log-likelihoods (-inf is allowed)")
        return data

    def fit(self, counts: list, samples: bytes) -> None:
        y = np.frombuffer(samples, dtype=np.float64).reshape(-1, self.dim).copy()
        self._call("fit", self._counts(counts), y)

    def metrics(self) -> list:
        """``[(name, bytes of num_texts values)]`` in the model's order."""
        m = self._call("metrics")
        if not isinstance(m, Mapping):
            raise RuntimeError(f"returned {type(m).__name__}; expected a dict {{name: array of {self.num_texts} values}}")
        out = []
        for name, values in m.items():
            data = self._rows("metrics", np.reshape(np.asarray(values, dtype=np.float64), (-1, 1)), self.num_texts, 1, f"metric {name!r}: one value per text")
            out.append((str(name), data))
        return out

    def add_text(self) -> None:
        if getattr(self.model, "add_text", None) is None:
            raise RuntimeError("the model has no `add_text` method: a NewText corpus injection needs one")
        self._call("add_text")
        self.num_texts += 1

    def get_state(self) -> bytes:
        if getattr(self.model, "get_state", None) is None or getattr(self.model, "set_state", None) is None:
            raise RuntimeError("the model has no `get_state`/`set_state` methods: it does not support checkpoints")
        state = np.ascontiguousarray(np.asarray(self._call("get_state"), dtype=np.float64).ravel())
        return state.tobytes()

    def set_state(self, state: bytes) -> None:
        if getattr(self.model, "set_state", None) is None:
            raise RuntimeError("the model has no `set_state` method: it does not support checkpoints")
        self._call("set_state", np.frombuffer(state, dtype=np.float64).copy())
