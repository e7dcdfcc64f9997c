#!/usr/bin/env bash
# Overhead of the Python path against the command line on the paper's scenario
# (scenarios/coevolve.ron): `coevo run` (release binary, writing its folder) against
# `coevo.run(...)` from Python (release wheel; the metrics handed over as Arrow, no folder) and
# `coevo.run(..., out=...)` (the folder too). Runs are interleaved (CLI, Python, Python+out,
# CLI, ...) so that load from other processes hits all three alike; prints each run's wall time
# and the ratio of medians against the CLI. Not a test: timings depend on the machine.
#
#   benches/python_overhead.sh [REPETITIONS] [REPLICATES]     (default 7 and 1)
#
# Builds `cargo build --release` and a release wheel (`maturin build --release`) installed
# into .venv-bench/ (git-ignored), from the pinned tools of python/requirements-dev.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-7}
replicates=${2:-1}
root=$PWD
venv=$root/.venv-bench
cargo build --release --bin coevo --quiet
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r python/requirements-dev.txt
fi
rm -rf target/wheels-bench
(cd python && "$venv/bin/maturin" build --release --quiet --out "$root/target/wheels-bench")
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps target/wheels-bench/*.whl
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$venv/bin/python" - "$reps" "$replicates" "$out" <<'PY'
import statistics, subprocess, sys, time
import coevo

reps, replicates, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
scenario = "scenarios/coevolve.ron"
times = {"cli": [], "python": [], "python+out": []}
for i in range(reps):
    t = time.perf_counter()
    subprocess.run(["target/release/coevo", "run", scenario, "--replicates", replicates, "--out", f"{out}/cli", "--force", "--quiet"], check=True)
    times["cli"].append(time.perf_counter() - t)
    t = time.perf_counter()
    rows = coevo.run(scenario, replicates=int(replicates)).metrics.height
    times["python"].append(time.perf_counter() - t)
    t = time.perf_counter()
    coevo.run(scenario, replicates=int(replicates), out=f"{out}/py", force=True)
    times["python+out"].append(time.perf_counter() - t)
    print(f"repetition {i}: " + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in times.items()), flush=True)
cli = statistics.median(times["cli"])
print(f"{scenario}, {replicates} replicate(s), {rows} metric rows, {reps} interleaved repetitions")
for k, v in times.items():
    print(f"{k:>11}: median {statistics.median(v):.3f} s (min {min(v):.3f} s), ratio to the CLI {statistics.median(v) / cli:.3f}")
PY
