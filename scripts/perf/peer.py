#!/usr/bin/env python3
"""Side by side, in one process, on the same audio file: YAMNet run the way open-source NVRs
run it, and `earshot analyze`.

The peer: yamnet_waveform.onnx (input `waveform` f32 [15600] at 16 kHz, its own log-mel front
end inside the graph) on 0.975 s windows every 0.48 s, onnxruntime on the CPU with one intra-op
and one inter-op thread, sequential execution, one window after another. Frigate's audio
detector feeds 0.975 s chunks of 16 kHz audio (frigate/const.py AUDIO_DURATION = 0.975) to a
YAMNet TF-Lite classification model through tflite_runtime (its AudioTfl detector,
num_threads=2); yamnet_waveform.onnx is Google's published TF-Lite YAMNet converted to ONNX
(../shared/models/README.md). The 0.48 s hop is YAMNet's reference patch hop, as in earshot.
onnxruntime's default graph optimisations turn the int8 QDQ graph into int8 QLinearConv kernels.
Timed separately: decoding the file (soundfile), resampling to 16 kHz mono
(scipy.signal.resample_poly; a no-op copy when the file is already 16 kHz), and the inference
loop (time.perf_counter; CPU by time.process_time).

Earshot: `earshot analyze --format json -q FILE` as a child process on the SAME file: earshot
decodes and resamples it itself, which is part of its pipeline cost (and it also runs level
meters and detectors). Wall time by time.perf_counter, CPU as user+sys of the child from
resource.getrusage(RUSAGE_CHILDREN) deltas. Also with `--no-gate` when `earshot analyze --help`
lists that flag.

Each figure is the median of --repeat runs (3). Real-time factor = audio seconds / seconds.

    python peer.py [--earshot target/release/earshot] [--audio FILE] [--minutes 10]
"""
import argparse
import json
import os
import resource
import subprocess
import tempfile
import time
from collections import Counter

import common as C  # first: it pins numpy/BLAS to one thread



def excerpt(path, minutes, tmpdir):
    """The file both sides read: the original, or its first `minutes` in the same format."""
    import soundfile as sf
    if minutes <= 0:
        return path
    info = sf.info(path)
    x, rate = sf.read(path, frames=int(round(minutes * 60 * info.samplerate)), always_2d=True,
                      dtype="int16" if info.subtype == "PCM_16" else "float32")
    out = os.path.join(tmpdir, f"excerpt_{minutes:g}min.{'flac' if info.format == 'FLAC' else 'wav'}")
    if info.format in ("FLAC", "WAV"):
        sf.write(out, x, rate, format=info.format, subtype=info.subtype)
    else:
        sf.write(out, x, rate, format="WAV", subtype="FLOAT")
    return out


def run_peer(path, repeat, tmpdir):
    import onnx
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.optimized_model_filepath = os.path.join(tmpdir, "peer_optimized.onnx")  # to see its kernels
    so.log_severity_level = 3
    sess = ort.InferenceSession(C.need_file(C.WAVEFORM_ONNX, "model"), so,
                                providers=["CPUExecutionProvider"])
    ops = Counter(n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node)
    decode, resample, walls, cpus = [], [], [], []
    for _ in range(repeat):
        x, rate, t_dec = C.read_audio(path, 0)
        x, t_res = C.to_16k(x, rate)
        decode.append(t_dec)
        resample.append(t_res)
    n = 1 + (len(x) - C.WIN) // C.HOP
    sess.run(["scores"], {"waveform": x[:C.WIN]})  # warm-up: first-run allocations
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        for k in range(n):
            sess.run(["scores"], {"waveform": x[k * C.HOP: k * C.HOP + C.WIN]})
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return {"audio_s": len(x) / C.SR, "source_rate": rate, "windows": n, "optimized_ops": dict(ops),
            "decode_s": C.median(decode), "resample_s": C.median(resample),
            "infer_walls_s": walls, "infer_cpus_s": cpus,
            "infer_wall_s": C.median(walls), "infer_cpu_s": C.median(cpus)}


def run_earshot(binary, path, repeat, extra):
    cmd = [binary, "analyze", "--format", "json", "-q", *extra, path]
    walls, cpus, out = [], [], None
    for _ in range(repeat):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if p.returncode != 0:
            C.die(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.strip()[-500:]}")
        walls.append(wall)
        cpus.append((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime))
        out = json.loads(p.stdout.splitlines()[0])
    return {"cmd": cmd, "walls_s": walls, "cpus_s": cpus, "wall_s": C.median(walls),
            "cpu_s": C.median(cpus), "audio_s": out["summary"]["duration_s"],
            "patches": out["summary"]["patches"], "max_rss_mb_children": r1.ru_maxrss / 1024}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--earshot", default="target/release/earshot")
    ap.add_argument("--audio", default=C.DEFAULT_AUDIO)
    ap.add_argument("--minutes", type=float, default=10, help="first N minutes; 0 = all")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    if not (os.path.isfile(a.earshot) and os.access(a.earshot, os.X_OK)):
        C.die(f"earshot binary not found or not executable at {a.earshot!r} "
              "(build it with `cargo build --release` or pass --earshot PATH)")
    C.need_file(a.audio, "audio")
    C.need_file(C.WAVEFORM_ONNX, "model")
    helptext = subprocess.run([a.earshot, "analyze", "--help"], capture_output=True, text=True).stdout
    variants = [("earshot", [])] + ([("earshot --no-gate", ["--no-gate"])] if "--no-gate" in helptext else [])
    load0 = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix="earshot-perf-") as tmp:
        path = excerpt(a.audio, a.minutes, tmp)
        peer = run_peer(path, a.repeat, tmp)
        ears = {name: run_earshot(a.earshot, path, a.repeat, extra) for name, extra in variants}

    secs, n = peer["audio_s"], peer["windows"]
    e2e = peer["decode_s"] + peer["resample_s"] + peer["infer_wall_s"]
    rows = [  # name, what is timed, wall s, cpu s, windows/patches
        ("peer: YAMNet onnxruntime 1 thread", "inference loop only", peer["infer_wall_s"], peer["infer_cpu_s"], n),
        ("peer: same + decode + resample", "decode, resample, inference", e2e, None, n),
    ] + [(name, "whole `analyze` run (decode, resample, front end, model, meters)",
          e["wall_s"], e["cpu_s"], e["patches"]) for name, e in ears.items()]

    m = C.machine()
    print(f"Machine: {m['cpu']} ({m['logical_cpus']} logical CPUs), Python {m['python']}, "
          f"onnxruntime {m.get('onnxruntime')}, numpy {m['numpy']}, scipy {m.get('scipy')}; "
          f"load average {load0[0]:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(f"Audio: {secs:.1f} s from {a.audio} ({'first %g min' % a.minutes if a.minutes > 0 else 'all'}, "
          f"{peer['source_rate']} Hz); earshot reads the same file and decodes/resamples it itself.")
    flags = C.cpu_flags() & {"avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"}
    ops = peer["optimized_ops"]
    print(f"onnxruntime runs the peer as {ops.get('QLinearConv', 0)} QLinearConv (int8) and {ops.get('Conv', 0)} "
          f"float Conv nodes after its graph optimisations; CPU: {' '.join(sorted(flags)) or 'no AVX'}.")
    print(f"Median of {a.repeat} runs each. Peer decode {peer['decode_s'] * 1e3:.0f} ms, "
          f"resample {peer['resample_s'] * 1e3:.0f} ms (timed separately).\n")
    print("| pipeline | timed | windows | wall s | ms/window | RTF (wall) | CPU s | RTF (CPU) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, what, wall, cpu, k in rows:
        cpu_s = f"{cpu:.2f}" if cpu is not None else "-"
        rtf_c = f"{secs / cpu:.0f}x" if cpu else "-"
        print(f"| {name} | {what} | {k} | {wall:.2f} | {wall / k * 1e3:.2f} | {secs / wall:.0f}x | {cpu_s} | {rtf_c} |")
    print()
    ratios = {}
    for name, e in ears.items():
        ratios[name] = {
            "rtf_ratio_vs_peer_inference_wall": peer["infer_wall_s"] / e["wall_s"],
            "rtf_ratio_vs_peer_inference_cpu": peer["infer_cpu_s"] / e["cpu_s"],
            "rtf_ratio_vs_peer_end_to_end_wall": e2e / e["wall_s"]}
        r = ratios[name]
        print(f"{name} / peer (RTF ratio, >1 = earshot faster): "
              f"{r['rtf_ratio_vs_peer_inference_wall']:.2f} by wall vs the peer's inference loop, "
              f"{r['rtf_ratio_vs_peer_inference_cpu']:.2f} by CPU, "
              f"{r['rtf_ratio_vs_peer_end_to_end_wall']:.2f} by wall vs the peer's decode+resample+inference")
    if len(variants) == 1:
        print("(`earshot analyze --help` lists no --no-gate flag: only the default run was measured)")
    path = C.write_json("peer.json", {
        "audio": a.audio, "minutes": a.minutes, "audio_s": secs, "repeat": a.repeat,
        "peer": {**peer, "model": C.WAVEFORM_ONNX, "threads": {"intra_op": 1, "inter_op": 1},
                 "window_samples": C.WIN, "hop_samples": C.HOP,
                 "rtf_inference_wall": secs / peer["infer_wall_s"], "rtf_end_to_end_wall": secs / e2e,
                 "ms_per_window": peer["infer_wall_s"] / n * 1e3},
        "earshot": {name: {**e, "rtf_wall": secs / e["wall_s"], "rtf_cpu": secs / e["cpu_s"]}
                    for name, e in ears.items()},
        "earshot_no_gate_flag": len(variants) > 1, "ratios": ratios,
        "machine": {**m, "cpu_flags": sorted(flags), "loadavg_before": load0, "loadavg_after": os.getloadavg()},
        "note": "earshot is given the audio file and decodes and resamples it itself; "
                "the peer's inference figure excludes decoding and resampling"})
    print(f"-> {path}")


if __name__ == "__main__":
    main()
