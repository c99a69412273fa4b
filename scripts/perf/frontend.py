#!/usr/bin/env python3
"""YAMNet's log-mel front end in numpy, as a Python user would write it: its speed and its match.

Measures: the real-time factor (audio seconds / wall seconds, median of 3) of a vectorised
numpy front end over the whole recording (stride-trick framing, np.fft.rfft, one matmul), and
the max abs difference against the model's own front end, the `log_mel_spectrogram` output of
yamnet_waveform.onnx, for a few 0.975 s windows.

Facts (../shared/models/README.md; YAMNet's params.py/features.py in the TensorFlow models
repository): 16 kHz; 400-sample periodic Hann window, hop 160, FFT 512, magnitude |X| (257 bins);
64 mel bands 125-7500 Hz on the HTK scale mel = 1127 ln(1 + f/700), triangular weights as
tf.signal.linear_to_mel_weight_matrix builds them (the DC bin gets zero weight); log(mel + 0.001);
patches of 96 frames every 48 frames (0.96 s every 0.48 s).

    python frontend.py [--audio FILE] [--minutes 10]    # 0 minutes = the whole file
"""
import argparse
import time

import common as C  # first: it pins numpy/BLAS to one thread

import numpy as np

FRAME, STEP, NFFT, NMEL = 400, 160, 512, 64
PATCH, PATCH_HOP = 96, 48


def hz_to_mel(f):
    return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)


def mel_matrix(bins=NFFT // 2 + 1, rate=C.SR, lo=125.0, hi=7500.0, nmel=NMEL):
    """[257, 64] like tf.signal.linear_to_mel_weight_matrix: row 0 (DC) is all zeros."""
    spec_mel = hz_to_mel(np.linspace(0.0, rate / 2, bins)[1:])[:, None]
    edges = np.linspace(hz_to_mel(lo), hz_to_mel(hi), nmel + 2)
    left, center, right = edges[:-2], edges[1:-1], edges[2:]
    up = (spec_mel - left) / (center - left)
    down = (right - spec_mel) / (right - center)
    w = np.maximum(0.0, np.minimum(up, down))
    return np.vstack([np.zeros((1, nmel)), w]).astype(np.float32)


WINDOW = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(FRAME) / FRAME)).astype(np.float32)  # periodic
MEL = mel_matrix()


def log_mel(x):
    """16 kHz mono float32 -> [frames, 64] log-mel, frames = 1 + (len - 400) // 160."""
    frames = np.lib.stride_tricks.sliding_window_view(x, FRAME)[::STEP]
    mag = np.abs(np.fft.rfft(frames * WINDOW, n=NFFT, axis=1))
    return np.log(mag @ MEL + 0.001)


def patches(lm):
    """[frames, 64] -> [n, 96, 64] views, one per 0.48 s."""
    return np.lib.stride_tricks.sliding_window_view(lm, (PATCH, NMEL))[::PATCH_HOP, 0]


def check_against_graph(x, n_windows=6):
    """Max |numpy - graph| of log_mel_spectrogram for windows spread over the audio."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    sess = ort.InferenceSession(C.need_file(C.WAVEFORM_ONNX, "model"), so,
                                providers=["CPUExecutionProvider"])
    n_total = 1 + (len(x) - C.WIN) // C.HOP
    rows = []
    for k in np.linspace(0, n_total - 1, n_windows).astype(int):
        w = x[k * C.HOP: k * C.HOP + C.WIN]
        graph = sess.run(["log_mel_spectrogram"], {"waveform": w})[0]
        ours = log_mel(w)
        assert ours.shape == graph.shape == (PATCH, NMEL), (ours.shape, graph.shape)
        rows.append({"window": int(k), "start_s": k * C.HOP / C.SR,
                     "max_abs_diff": float(np.abs(ours - graph).max()),
                     "graph_range": [float(graph.min()), float(graph.max())]})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--audio", default=C.DEFAULT_AUDIO)
    ap.add_argument("--minutes", type=float, default=10, help="first N minutes; 0 = all")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()

    x, rate, _ = C.read_audio(a.audio, a.minutes)
    x, _ = C.to_16k(x, rate)
    secs = len(x) / C.SR
    walls = []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        p = patches(log_mel(x))
        walls.append(time.perf_counter() - t0)
    wall = C.median(walls)
    checks = check_against_graph(x)
    worst = max(r["max_abs_diff"] for r in checks)

    span = f"first {a.minutes:g} min" if a.minutes > 0 else "all"
    print(f"numpy log-mel front end on {secs:.0f} s of audio ({a.audio}, {span}), "
          f"{len(p)} patches, median of {a.repeat}:")
    print(f"  wall {wall * 1e3:.1f} ms  ->  real-time factor {secs / wall:.0f}x "
          f"({wall / secs * 1e3:.3f} ms per audio second)")
    print("  vs the graph's own front end (yamnet_waveform.onnx `log_mel_spectrogram`):")
    for r in checks:
        print(f"    window {r['window']:5d} at {r['start_s']:7.2f} s: max |diff| {r['max_abs_diff']:.2e}"
              f"  (graph values {r['graph_range'][0]:.2f}..{r['graph_range'][1]:.2f})")
    print(f"  worst max |diff| {worst:.2e}  (nonzero mel weights: {np.count_nonzero(MEL)})")
    path = C.write_json("frontend.json", {
        "audio": a.audio, "audio_s": secs, "patches": len(p), "walls_s": walls, "wall_s": wall,
        "rtf": secs / wall, "check": checks, "max_abs_diff": worst,
        "mel_nonzero": int(np.count_nonzero(MEL)), "machine": C.machine()})
    print(f"  -> {path}")


if __name__ == "__main__":
    main()
