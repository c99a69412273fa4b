"""Shared helpers for scripts/perf: paths, audio loading, the machine, output files.

Paths are relative to the repository root (run.sh changes into it). The models and the
audio live in ../shared and are read from there, never copied into the repository.
"""
import json
import os
import platform
import sys
import time

# Single-threaded numpy/BLAS, like the single-threaded peer and earshot (set before numpy loads).
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

SHARED = os.environ.get("EARSHOT_SHARED", "../shared")
MODELS = os.path.join(SHARED, "models")
WAVEFORM_ONNX = os.path.join(MODELS, "yamnet_waveform.onnx")
LOGMEL_ONNX = os.path.join(MODELS, "yamnet_logmel.onnx")
DEFAULT_AUDIO = os.path.join(SHARED, "eval", "background", "background_60min.flac")
OUT_DIR = os.path.join("target", "perf")

SR = 16000            # YAMNet's sample rate
WIN = 15600           # 0.975 s, the waveform model's input
HOP = 7680            # 0.48 s = 48 frames of 10 ms, YAMNet's reference patch hop


def die(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def need_file(path, what):
    if not os.path.isfile(path):
        die(f"{what} not found at {path!r} (expected ../shared beside the repository, "
            "or set EARSHOT_SHARED)")
    return path


def read_audio(path, minutes):
    """Decode the first `minutes` (0 = all) of `path` to mono float32; returns (x, rate, seconds)."""
    import soundfile as sf
    need_file(path, "audio")
    rate = sf.info(path).samplerate
    frames = -1 if minutes <= 0 else int(round(minutes * 60 * rate))
    t0 = time.perf_counter()
    x, rate = sf.read(path, frames=frames, dtype="float32", always_2d=True)
    x = x.mean(axis=1, dtype="float32") if x.shape[1] > 1 else x[:, 0]
    return x, rate, time.perf_counter() - t0


def to_16k(x, rate):
    """Polyphase resampling to 16 kHz mono (scipy.signal.resample_poly); returns (y, seconds)."""
    from math import gcd
    from scipy.signal import resample_poly
    t0 = time.perf_counter()
    if rate != SR:
        g = gcd(SR, rate)
        x = resample_poly(x, SR // g, rate // g).astype("float32")
    return x, time.perf_counter() - t0


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def machine():
    import numpy
    info = {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "python": platform.python_version(),
            "numpy": numpy.__version__}
    try:
        import onnxruntime
        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    try:
        import scipy
        info["scipy"] = scipy.__version__
    except ImportError:
        pass
    return info


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


def write_json(name, obj):
    os.makedirs(OUT_DIR, exist_ok=True)
    path = os.path.join(OUT_DIR, name)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
    return path
