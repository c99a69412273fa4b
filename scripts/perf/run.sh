#!/usr/bin/env bash
# Performance side by side and on paper: earshot against YAMNet as open-source NVRs run it
# (peer.py), a numpy YAMNet front end checked against the graph's own (frontend.py), and the
# MACs of YAMNet with the CPU share they take on one ARM Cortex-A53 core (macs.py).
#
# Creates target/perf-venv (python3 -m venv) with the pinned scripts/perf/requirements.txt,
# then runs the three scripts from the repository root. Models and audio are read from
# ../shared (set EARSHOT_SHARED to put it elsewhere); nothing is copied into the repository.
# Results: the tables on stdout, and target/perf/{peer,frontend,macs}.json, target/perf/arm_budget.md.
#
#   bash scripts/perf/run.sh                                # first 10 min of the background hour
#   bash scripts/perf/run.sh --full                         # all 60 minutes
#   bash scripts/perf/run.sh --earshot /path/to/earshot --audio FILE --minutes 5 --repeat 3
#
# Options: --earshot PATH (default target/release/earshot), --audio FILE (default
# ../shared/eval/background/background_60min.flac; any WAV/FLAC), --minutes N (first N minutes,
# default 10; 0 = whole file), --full (= --minutes 0), --repeat N (median of N, default 3).
set -euo pipefail

cd "$(dirname "$0")/../.."
SHARED=${EARSHOT_SHARED:-../shared}
EARSHOT=target/release/earshot
AUDIO=$SHARED/eval/background/background_60min.flac
MINUTES=10
REPEAT=3
while [[ $# -gt 0 ]]; do
  case $1 in
    --earshot) EARSHOT=$2; shift 2 ;;
    --audio) AUDIO=$2; shift 2 ;;
    --minutes) MINUTES=$2; shift 2 ;;
    --full) MINUTES=0; shift ;;
    --repeat) REPEAT=$2; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

for f in "$SHARED/models/yamnet_waveform.onnx" "$SHARED/models/yamnet_logmel.onnx" "$AUDIO"; do
  [[ -f $f ]] || { echo "error: $f not found (models and audio come from ../shared beside the repository; set EARSHOT_SHARED)" >&2; exit 2; }
done
[[ -x $EARSHOT ]] || { echo "error: no earshot binary at $EARSHOT (cargo build --release, or pass --earshot PATH)" >&2; exit 2; }

VENV=target/perf-venv
REQ=scripts/perf/requirements.txt
if [[ ! -x $VENV/bin/python ]] || ! cmp -s "$REQ" "$VENV/requirements.installed"; then
  echo "== setting up $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQ"
  cp "$REQ" "$VENV/requirements.installed"
fi
PY=$VENV/bin/python
export EARSHOT_SHARED=$SHARED

echo "== peer.py: YAMNet (onnxruntime, 1 thread) vs earshot analyze, same audio"
"$PY" scripts/perf/peer.py --earshot "$EARSHOT" --audio "$AUDIO" --minutes "$MINUTES" --repeat "$REPEAT"
echo
echo "== frontend.py: numpy log-mel front end"
"$PY" scripts/perf/frontend.py --audio "$AUDIO" --minutes "$MINUTES" --repeat "$REPEAT"
echo
echo "== macs.py: MACs from the graph and the Cortex-A53 budget"
"$PY" scripts/perf/macs.py
