#!/usr/bin/env bash
# One-core throughput comparison: numpy reference (benches/reference/coevo_numpy.py) vs the coevo engine,
# one training round (docs/model.md section 3) at three scales.
#
# Usage: benches/compare.sh [--quick] [--no-rust] [--scales paper,mid,large] [--seed S] [--platform]
#   --quick     few rounds per scale (smoke run; numbers are noisy)
#   --no-rust   skip building/running the Rust side
#   --platform  also the platform row (K = 1024, d = 512 diagonal, N = 1e5; about 2.5 GB and a few
#               minutes): numpy single-threaded with its diagonal GEMM form, coevo unpinned (every
#               core), interleaved numpy, coevo, numpy, coevo
# Environment: TARGET_SECONDS (default 5) sizes the Rust runs; NUMPY_POSTERIOR (default quadratic,
# the reference's fastest posterior, which is what coevo is compared with; `mahalanobis` is its
# slower, stabler one, see its docstring).
#
# Both sides run single-threaded: BLAS/OpenMP/rayon thread counts are 1 and, where taskset works, both
# are pinned to CPU 0.  Raw JSON records go to target/bench/compare.jsonl.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

QUICK=0
RUST=1
SCALES="paper,mid,large"
SEED=1
PLATFORM=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --platform) PLATFORM=1 ;;
        --no-rust) RUST=0 ;;
        --scales) SCALES="$2"; shift ;;
        --seed) SEED="$2"; shift ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done
TARGET_SECONDS="${TARGET_SECONDS:-5}"
NUMPY_POSTERIOR="${NUMPY_POSTERIOR:-quadratic}"

# ---- single core -------------------------------------------------------------------------------
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 BLIS_NUM_THREADS=1 \
       VECLIB_MAXIMUM_THREADS=1 NUMEXPR_NUM_THREADS=1 RAYON_NUM_THREADS=1
PIN=()
if command -v taskset >/dev/null 2>&1 && taskset -c 0 true 2>/dev/null; then
    PIN=(taskset -c 0)
fi

# ---- (1) venv with the pinned requirements ------------------------------------------------------
VENV="$ROOT/target/bench-venv"
OUT="$ROOT/target/bench"
mkdir -p "$OUT"
if [[ ! -x "$VENV/bin/python" ]]; then
    echo "creating $VENV" >&2
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r benches/reference/requirements.txt
PY="$VENV/bin/python"

json_field() { "$PY" -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])[sys.argv[1]])' "$1"; }

# scale name, K, d, N, numpy rounds (each numpy run ~2-10 s on a 2-core x86_64 VM; see benches/reference/README.md)
declare -A K_ D_ N_ R_
K_[paper]=5;   D_[paper]=2;  N_[paper]=1000;   R_[paper]=10000
K_[mid]=50;    D_[mid]=8;    N_[mid]=10000;    R_[mid]=200
K_[large]=256; D_[large]=32; N_[large]=100000; R_[large]=2
if [[ $QUICK == 1 ]]; then R_[paper]=500; R_[mid]=10; R_[large]=1; fi

# ---- (3a) is the Rust side there? ---------------------------------------------------------------
RUST_OK=0
RUST_WHY=""
rust_cmd() { "${PIN[@]}" cargo run --release --quiet --bin coevo -- bench-round "$@"; }
if [[ $RUST == 1 ]]; then
    if ! command -v cargo >/dev/null 2>&1; then
        RUST_WHY="cargo not found"
    elif ! cargo build --release --quiet --bin coevo >"$OUT/cargo-build.log" 2>&1; then
        RUST_WHY="release build failed, see $OUT/cargo-build.log"
    elif ! probe="$(rust_cmd --K 5 --d 2 --N 100 --rounds 1 --seed "$SEED" 2>"$OUT/rust-probe.err")" \
         || ! json_field rounds_per_second <<<"$probe" >/dev/null 2>&1; then
        RUST_WHY="\`coevo bench-round\` missing or not printing the JSON record, see $OUT/rust-probe.err"
    else
        RUST_OK=1
    fi
    if [[ $RUST_OK == 0 ]]; then echo "rust side not available yet ($RUST_WHY)" >&2; fi
else
    RUST_WHY="skipped (--no-rust)"
fi

# ---- (2) + (3b) run ------------------------------------------------------------------------------
: >"$OUT/compare.jsonl"
ROWS=()
IFS=',' read -r -a scale_list <<<"$SCALES"
for s in "${scale_list[@]}"; do
    [[ -n "${K_[$s]:-}" ]] || { echo "unknown scale $s" >&2; exit 2; }
    args=(--K "${K_[$s]}" --d "${D_[$s]}" --N "${N_[$s]}" --seed "$SEED")
    echo "[$s] numpy: ${R_[$s]} rounds ..." >&2
    rec="$("${PIN[@]}" "$PY" benches/reference/coevo_numpy.py "${args[@]}" --rounds "${R_[$s]}" --threads 1 \
           --posterior "$NUMPY_POSTERIOR")"
    echo "{\"side\":\"numpy\",\"scale\":\"$s\",\"record\":$rec}" >>"$OUT/compare.jsonl"
    np_rps="$(json_field rounds_per_second <<<"$rec")"
    rs_rps="n/a"
    ratio="n/a"
    fl_rps="n/a"
    floor_ratio="n/a"
    if [[ $RUST_OK == 1 ]]; then
        # Size the Rust run to ~TARGET_SECONDS from a short pilot (it may be much faster than numpy).
        pilot_rounds=$(( R_[$s] / 10 > 0 ? R_[$s] / 10 : 1 ))
        pilot="$(rust_cmd "${args[@]}" --rounds "$pilot_rounds")"
        rounds="$("$PY" -c 'import sys,math; r=float(sys.argv[1])*float(sys.argv[2]); print(max(int(sys.argv[3]), math.ceil(r)))' \
                  "$(json_field rounds_per_second <<<"$pilot")" "$TARGET_SECONDS" "$([[ $QUICK == 1 ]] && echo 1 || echo 3)")"
        [[ $QUICK == 1 ]] && rounds=$pilot_rounds
        echo "[$s] coevo: $rounds rounds ..." >&2
        rrec="$(rust_cmd "${args[@]}" --rounds "$rounds")"
        echo "{\"side\":\"coevo\",\"scale\":\"$s\",\"record\":$(tail -n1 <<<"$rrec")}" >>"$OUT/compare.jsonl"
        rs_rps="$(json_field rounds_per_second <<<"$rrec")"
        ratio="$("$PY" -c 'import sys; print(f"{float(sys.argv[1])/float(sys.argv[2]):.2f}x")' "$rs_rps" "$np_rps")"
        # The arithmetic floor at the same scale, same number of rounds: round time / floor time.
        frec="$(rust_cmd "${args[@]}" --rounds "$rounds" --floor)"
        echo "{\"side\":\"floor\",\"scale\":\"$s\",\"record\":$(tail -n1 <<<"$frec")}" >>"$OUT/compare.jsonl"
        fl_rps="$(json_field rounds_per_second <<<"$frec")"
        floor_ratio="$("$PY" -c 'import sys; print(f"{float(sys.argv[1])/float(sys.argv[2]):.2f}")' "$fl_rps" "$rs_rps")"
    fi
    ROWS+=("$s|${K_[$s]}|${D_[$s]}|${N_[$s]}|$np_rps|$rs_rps|$ratio|$fl_rps|$floor_ratio")
done

# ---- table -------------------------------------------------------------------------------------
echo
echo "one core${PIN:+ (pinned with taskset -c 0)}; numpy posterior: $NUMPY_POSTERIOR; ratio = coevo / numpy rounds per second"
"$PY" - "${ROWS[@]}" <<'EOF'
import sys
def fmt(v):
    try:
        x = float(v)
    except ValueError:
        return v
    return f"{x:.4g}" if x < 100 else f"{x:.0f}"
hdr = ["scale", "K", "d", "N", "numpy rounds/s", "coevo rounds/s", "coevo/numpy", "floor rounds/s", "round/floor time"]
rows = [r.split("|") for r in sys.argv[1:]]
rows = [r[:4] + [fmt(r[4]), fmt(r[5]), r[6], fmt(r[7]), r[8]] for r in rows]
w = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(hdr)]
line = lambda cells: "  ".join(c.rjust(w[i]) if i else c.ljust(w[i]) for i, c in enumerate(cells))
print(line(hdr)); print(line(["-" * x for x in w]))
for r in rows: print(line(r))
EOF
if [[ $RUST_OK == 0 ]]; then echo "rust side not available yet ($RUST_WHY)"; exit 0; fi

# ---- platform scale (issue 17): K = 1024, d = 512 diagonal covariances, N = 1e5 ----------------
# numpy stays single-threaded (its fastest form: one GEMM per chunk against the features (y^2, y));
# coevo runs unpinned on every core. Interleaved: numpy, coevo, numpy, coevo; the row reports each
# side's better run (the slower one is in compare.jsonl).
if [[ $PLATFORM == 1 ]]; then
    CORES_P="$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)"
    pargs=(--K 1024 --d 512 --N 100000 --seed "$SEED")
    best_np=0; best_rs=0
    for rep in 1 2; do
        echo "[platform] numpy, run $rep ..." >&2
        rec="$("$PY" benches/reference/coevo_numpy.py "${pargs[@]}" --rounds 1 --threads 1 --structure diagonal)"
        echo "{\"side\":\"numpy\",\"scale\":\"platform\",\"record\":$rec}" >>"$OUT/compare.jsonl"
        best_np="$("$PY" -c 'import sys; print(max(float(sys.argv[1]), float(sys.argv[2])))' "$best_np" "$(json_field rounds_per_second <<<"$rec")")"
        echo "[platform] coevo, run $rep ..." >&2
        rrec="$(RAYON_NUM_THREADS="$CORES_P" cargo run --release --quiet --bin coevo -- bench-round "${pargs[@]}" --rounds 2 --structure diagonal)"
        echo "{\"side\":\"coevo\",\"scale\":\"platform\",\"cores\":$CORES_P,\"record\":$(tail -n1 <<<"$rrec")}" >>"$OUT/compare.jsonl"
        best_rs="$("$PY" -c 'import sys; print(max(float(sys.argv[1]), float(sys.argv[2])))' "$best_rs" "$(json_field rounds_per_second <<<"$rrec")")"
    done
    "$PY" -c 'import sys; n, r, c = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]; print(f"\nplatform (K = 1024, d = 512 diagonal, N = 100000): numpy (1 thread) {n:.3g} rounds/s, coevo ({c} cores) {r:.3g} rounds/s, coevo/numpy {r / n:.2f}x")' "$best_np" "$best_rs" "$CORES_P"
fi

# ---- replicate throughput: 64 paper-scale worlds on 1 thread and on every core -----------------
# Not `nproc`: it honours the OMP_NUM_THREADS=1 exported above for the one-core comparison.
CORES="$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)"
WROUNDS=$([[ $QUICK == 1 ]] && echo 20 || echo 300)
w1="$(cargo run --release --quiet --bin coevo -- bench-round --worlds 64 --threads 1 --rounds "$WROUNDS" --seed "$SEED")"
wp="$(cargo run --release --quiet --bin coevo -- bench-round --worlds 64 --threads "$CORES" --rounds "$WROUNDS" --seed "$SEED")"
echo "{\"side\":\"worlds\",\"threads\":1,\"record\":$w1}" >>"$OUT/compare.jsonl"
echo "{\"side\":\"worlds\",\"threads\":$CORES,\"record\":$wp}" >>"$OUT/compare.jsonl"
"$PY" - "$w1" "$wp" "$CORES" <<'EOF'
import json, sys
one, par, p = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
s1, sp = one["world_rounds_per_second"], par["world_rounds_per_second"]
print(f"\nreplicates: 64 worlds x {one['rounds']} rounds at paper scale: "
      f"1 thread {s1:.0f} world-rounds/s, {p} threads {sp:.0f} world-rounds/s, "
      f"speed-up {sp / s1:.2f}x, parallel efficiency {sp / s1 / p:.0%}")
EOF
