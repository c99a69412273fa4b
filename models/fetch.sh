#!/usr/bin/env bash
# Puts the YAMNet files Earshot embeds into models/ (git-ignored), verified against SHA256SUMS.
#
#   models/fetch.sh                 copy from a mirror directory: $EARSHOT_MODEL_MIRROR,
#                                   default ../shared/models beside the repository
#   models/fetch.sh --download      download Google's TFLite model and convert it (needs network
#                                   access to Kaggle and PyPI; not exercised by CI)
#
# The build (build.rs) also finds the files in $EARSHOT_MODEL_DIR or ../shared/models directly,
# so this script is only needed where no mirror is at hand.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
files=(yamnet_logmel.onnx yamnet_class_map.csv)

verify() { # file...
  local f
  for f in "$@"; do
    grep -E "  $f\$" SHA256SUMS | sha256sum -c --quiet - || {
      echo "error: $here/$f does not match models/SHA256SUMS; refusing to use it" >&2
      exit 1
    }
  done
}

if [[ "${1:-}" != "--download" ]]; then
  mirror=${EARSHOT_MODEL_MIRROR:-$here/../../shared/models}
  for f in "${files[@]}"; do
    [[ -f "$mirror/$f" ]] || { echo "error: $mirror/$f not found (set EARSHOT_MODEL_MIRROR, or use --download)" >&2; exit 1; }
    cp "$mirror/$f" "$f"
  done
  verify "${files[@]}"
  echo "models/: ${files[*]} copied from $mirror and verified"
  exit 0
fi

# --download: the upstream artifact, then the conversion the mirror was made with
# (tf2onnx 1.17.0, opset 17), then the cut at the log-mel tensor (see models/README.md).
url=https://www.kaggle.com/api/v1/models/google/yamnet/tfLite/classification-tflite/1/download
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
curl -fL "$url" -o "$tmp/model.tar.gz"
tar -xzf "$tmp/model.tar.gz" -C "$tmp"
tflite=$(find "$tmp" -name '*.tflite' | head -n 1)
cp "$tflite" yamnet_tfhub_classification_1.tflite
verify yamnet_tfhub_classification_1.tflite
curl -fL https://raw.githubusercontent.com/tensorflow/models/master/research/audioset/yamnet/yamnet_class_map.csv \
  -o yamnet_class_map.csv
python3 -m venv .venv
.venv/bin/pip install --quiet tensorflow-cpu==2.15.1 tf2onnx==1.17.0 onnx==1.16.2
.venv/bin/python convert.py yamnet_tfhub_classification_1.tflite .
# The upstream TFLite is verified above. The converted graphs match SHA256SUMS only when the
# converter's versions match the ones pinned here; if not, say so and stop rather than embed
# an unverified model silently.
if ! grep -E "  (yamnet_logmel.onnx|yamnet_class_map.csv)\$" SHA256SUMS | sha256sum -c --quiet -; then
  echo "error: the converted files differ from models/SHA256SUMS (converter versions?)." >&2
  echo "       Their sums are below; check them against the mirror, and only then update SHA256SUMS:" >&2
  sha256sum yamnet_logmel.onnx yamnet_class_map.csv >&2
  exit 1
fi
echo "models/: converted from the upstream TFLite and verified"
