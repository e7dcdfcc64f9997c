#!/usr/bin/env bash
# Overhead of the Python path against the command line on the paper's scenario
# (scenarios/coevolve.ron): `coevo run` (release binary, writing its folder) against
# `coevo.run(...)` from Python (release wheel; the metrics handed over as Arrow, no folder) and
# `coevo.run(..., out=...)` (the folder too). Runs are interleaved (CLI, Python, Python+out,
# CLI, ...) so that load from other processes hits all three alike; prints each run's wall time
# and CPU time, and the ratios of medians against the CLI. Not a test: timings depend on the machine.
#
#   benches/python_overhead.sh [REPETITIONS] [REPLICATES]     (default 7 and 1)
#
# Builds `cargo build --release` and a release wheel (`maturin build --release`) installed
# into .venv-bench/ (git-ignored), from the pinned tools of python/requirements-dev.txt.
# With PROFILE=test it builds nothing and times what .ci/python left instead: the `test`
# profile (opt-level 3 like release, with debug assertions) binary target/debug/coevo and the
# module python/coevo/_native.abi3.so, from the .venv/ of .ci/python.
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-7}
replicates=${2:-1}
root=$PWD
if [ "${PROFILE:-release}" = test ]; then
    bin=$root/target/debug/coevo
    python=$root/.venv/bin/python
    export PYTHONPATH=$root/python
else
    bin=$root/target/release/coevo
    venv=$root/.venv-bench
    python=$venv/bin/python
    cargo build --release --bin coevo --quiet
    if [ ! -x "$python" ]; then
        python3 -m venv "$venv"
        "$python" -m pip install --quiet --disable-pip-version-check -r python/requirements-dev.txt
    fi
    rm -rf target/wheels-bench
    (cd python && "$venv/bin/maturin" build --release --quiet --out "$root/target/wheels-bench")
    "$python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps target/wheels-bench/*.whl
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$python" - "$bin" "$reps" "$replicates" "$out" <<'PY'
import resource, statistics, subprocess, sys, time
import coevo

binary, reps, replicates, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
scenario = "scenarios/coevolve.ron"


def cpu(who):
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


# Wall time, and CPU time (user + system: of the child for the CLI, of this process for the
# Python path), the fairer figure on a loaded machine.
wall = {"cli": [], "python": [], "python+out": []}
cpus = {k: [] for k in wall}


def timed(name, who, work):
    t, c = time.perf_counter(), cpu(who)
    value = work()
    wall[name].append(time.perf_counter() - t)
    cpus[name].append(cpu(who) - c)
    return value


for i in range(reps):
    timed("cli", resource.RUSAGE_CHILDREN, lambda: subprocess.run(
        [binary, "run", scenario, "--replicates", replicates, "--out", f"{out}/cli", "--force", "--quiet"], check=True))
    rows = timed("python", resource.RUSAGE_SELF, lambda: coevo.run(scenario, replicates=int(replicates)).metrics.height)
    timed("python+out", resource.RUSAGE_SELF, lambda: coevo.run(scenario, replicates=int(replicates), out=f"{out}/py", force=True))
    print(f"repetition {i}: " + ", ".join(f"{k} {wall[k][-1]:.3f} s wall {cpus[k][-1]:.3f} s CPU" for k in wall), flush=True)
print(f"{scenario}, {replicates} replicate(s), {rows} metric rows, {reps} interleaved repetitions")
for k in wall:
    print(f"{k:>11}: wall median {statistics.median(wall[k]):.3f} s (ratio {statistics.median(wall[k]) / statistics.median(wall['cli']):.3f}), "
          f"CPU median {statistics.median(cpus[k]):.3f} s (ratio {statistics.median(cpus[k]) / statistics.median(cpus['cli']):.3f})")
PY
