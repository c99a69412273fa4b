#!/usr/bin/env bash
# Resident memory of `earshot run` over the background hour (README, Performance: "Memory" and
# "Where the memory goes"). Reads VmHWM, VmRSS, RssAnon and RssFile (kB) from /proc/PID/status.
#
#   bash scripts/perf/rss.sh BINARY              # unpaced (about 40 s), a sample every 0.2 s
#   bash scripts/perf/rss.sh BINARY --realtime   # paced at real time (one hour), every 30 s
#
# Prints one line per sample (seconds since start, then the four values) and the last sample.
# Extra environment for the run can be given as usual (e.g. MALLOC_MMAP_THRESHOLD_=131072 bash …).
set -euo pipefail
bin=${1:?usage: rss.sh BINARY [--realtime]}
mode=${2:-}
audio="$(dirname "$0")/../../../shared/eval/background/background_60min.flac"
[[ -f $audio ]] || { echo "error: $audio missing (../shared beside the repository)" >&2; exit 1; }
every=0.2
args=(run --input "wav:$audio" --jsonl /dev/null)
if [[ $mode == --realtime ]]; then
  every=30
  args+=(--realtime)
fi
"$bin" "${args[@]}" >/dev/null 2>/dev/null &
pid=$!
t0=$(date +%s%N)
secs() { local ms=$((($(date +%s%N) - t0) / 1000000)); printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100)); }
last=""
while kill -0 "$pid" 2>/dev/null; do
  s=$(awk '/^(VmHWM|VmRSS|RssAnon|RssFile):/ {printf "%s %s  ", $1, $2}' "/proc/$pid/status" 2>/dev/null || true)
  if [[ -n $s ]]; then
    last=$s
    if [[ $mode == --realtime ]]; then printf '%8s s  %s\n' "$(secs)" "$s"; fi
  fi
  sleep "$every"
done
wait "$pid" && rc=0 || rc=$?
printf 'exit %s after %s s; last sample: %s\n' "$rc" "$(secs)" "$last"
exit "$rc"
