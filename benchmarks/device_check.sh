#!/usr/bin/env bash
# memgen's record on an accelerator in one prepared call (under 8 minutes on one GPU):
# the bench suite, the Krylov route at d = 4096, the denoiser bench, a smoke run of the tests
# and the quick bench, each under its own time limit; one JSON record under
# benchmarks/results/ (and in $OUT). See benchmarks/device_check.py and benchmarks/README.md.
#
#   benchmarks/device_check.sh [--tiny] [--budget SECONDS] [--out FILE] [--only STAGES]
#
# Packages the machine lacks travel as wheels in .whl/ (git-ignored; benchmarks/README.md
# says how to fetch them): installed into /tmp/memgen-site first. memgen itself is used from
# this checkout (PYTHONPATH), not installed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/memgen-site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/memgen-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
exec "$PY" benchmarks/device_check.py "$@"
