"""Ctrl-C: a Python process running a long `coevo.run` gets SIGINT, raises KeyboardInterrupt
soon after (the run stops after its round in flight), and the folder it wrote is whole: the
manifest says `interrupted` and every row of metrics.csv is complete."""

import json
import os
import signal
import subprocess
import sys
import time

import polars as pl

from conftest import ROOT

SCRIPT = """
import sys, coevo
try:
    coevo.run("scenarios/coevolve.ron", rounds=1_000_000, replicates=2, out=sys.argv[1])
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
    sys.exit(130)
print("completed", flush=True)
"""


def test_sigint_stops_the_run_cleanly(tmp_path):
    out = tmp_path / "run"
    child = subprocess.Popen([sys.executable, "-c", SCRIPT, str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Wait until rounds are being written (the run is in its round loop, GIL released).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            metrics = out / "metrics.csv"
            if metrics.exists() and metrics.stat().st_size > 10_000:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the run did not start writing rounds within 60 s")
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=30)
        stopped = time.monotonic() - sent
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 130, stderr
    assert stdout.strip() == "KeyboardInterrupt"
    # One round of this scenario takes milliseconds; the poll runs every 50 ms. Seconds would
    # mean the signal was not seen until the run ended on its own (it never would).
    assert stopped < 10, stopped
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    completed = manifest["rounds_completed"]
    assert completed >= 1
    text = (out / "metrics.csv").read_text()
    assert text.endswith("\n")
    metrics = pl.read_csv(out / "metrics.csv")
    # Every round 0..=completed is there for both replicates, and nothing after it.
    assert metrics["round"].max() == completed
    assert metrics.group_by("replicate").agg(pl.col("round").n_unique())["round"].to_list() == [completed + 1] * 2
    assert not any(name.endswith(".tmp") for name in os.listdir(out))
