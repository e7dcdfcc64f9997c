"""Shared fixtures of the pytest suite: the repository's root and the command-line binary the
package is compared with (the one `cargo test --workspace` builds, or $COEVO_BIN)."""

import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def coevo_bin() -> pathlib.Path:
    """The `coevo` binary: $COEVO_BIN, else target/debug/coevo (built by `cargo test`)."""
    path = pathlib.Path(os.environ.get("COEVO_BIN", ROOT / "target" / "debug" / "coevo"))
    if not path.exists():
        pytest.fail(f"{path} not found: build it with `cargo build` (or `cargo test --workspace`), or set COEVO_BIN")
    return path


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Runs the command line from the repository's root."""
    done = subprocess.run([str(coevo_bin()), *args], cwd=ROOT, capture_output=True, text=True, env={**os.environ, "RUST_LOG": ""})
    if check and done.returncode != 0:
        raise AssertionError(f"coevo {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
    return done


@pytest.fixture
def at_root(monkeypatch):
    """Runs the test from the repository's root (scenario paths as the CLI tests write them)."""
    monkeypatch.chdir(ROOT)
    return ROOT
