"""Converts Google's YAMNet TFLite model into the two ONNX graphs Earshot uses.

    python convert.py yamnet_tfhub_classification_1.tflite OUT_DIR

1. tf2onnx 1.17.0 converts the TFLite model at opset 17; the input is renamed `waveform`, the
   output `scores`, and the front end's log-mel tensor is exposed as `log_mel_spectrogram`
   (yamnet_waveform.onnx, kept for verifying the Rust front end).
2. onnx.utils.extract_model cuts the graph from `log_mel_spectrogram` to the outputs `scores`,
   `logits` (the tensor before the final sigmoid) and `embedding` (the global-average-pooled
   features) (yamnet_logmel.onnx, the classifier Earshot embeds).
Both files are then checked against models/SHA256SUMS by fetch.sh. Not exercised by CI (no
network to the model hub there); the mirror in ../shared/models was made this way.
"""
import subprocess
import sys

import onnx
from onnx import utils


def rename(graph, old, new):
    for n in graph.node:
        n.input[:] = [new if i == old else i for i in n.input]
        n.output[:] = [new if o == old else o for o in n.output]
    for v in list(graph.input) + list(graph.output):
        if v.name == old:
            v.name = new


def main(tflite, out):
    raw = f"{out}/yamnet_raw.onnx"
    subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--tflite", tflite,
                    "--opset", "17", "--output", raw], check=True)
    m = onnx.load(raw)
    g = m.graph
    rename(g, g.input[0].name, "waveform")
    rename(g, g.output[0].name, "scores")
    if not any(o.name == "log_mel_spectrogram" for o in g.output):
        g.output.append(onnx.helper.make_tensor_value_info("log_mel_spectrogram", onnx.TensorProto.FLOAT, [96, 64]))
    onnx.save(m, f"{out}/yamnet_waveform.onnx")
    sigmoid = next(n for n in g.node if n.op_type == "Sigmoid")
    pool = next(n for n in g.node if n.op_type == "GlobalAveragePool")
    rename(g, sigmoid.input[0], "logits")
    rename(g, pool.output[0], "embedding")
    onnx.save(m, raw)
    cut = f"{out}/yamnet_logmel.onnx"
    utils.extract_model(raw, cut, ["log_mel_spectrogram"], ["scores", "logits", "embedding"])
    m = onnx.load(cut)
    rename(m.graph, "log_mel_spectrogram", "log_mel")
    onnx.save(m, cut)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
