#!/usr/bin/env python3
"""Multiply-accumulates of YAMNet counted from the graph, the front end counted on paper, and
the CPU share that gives on one ARM Cortex-A53 core.

1. Model: yamnet_logmel.onnx per [96, 64] patch, shapes from onnx.shape_inference.
   Conv: output elements x kH x kW x (Cin / group); MatMul/Gemm: M x N x K. Elementwise ops
   (bias add, Clip = ReLU6, Quantize/DequantizeLinear of activations, Sigmoid, the adds of
   GlobalAveragePool) are counted apart, one op per element. DequantizeLinear of the constant
   weights is done once at load, not per patch, and is left out. Published: 69.2 M multiply-adds
   per 0.96 s patch (TensorFlow models repository, research/audioset/yamnet/README.md).
2. Front end per second of audio (100 frames of 10 ms), on paper:
   window 400 mul; real FFT of N = 512 as 2.5 N log2 N flops (FFTW's benchFFT convention: 5 N
   log2 N for a complex transform, half for a real one); magnitude 257 x (mul + FMA) and 257
   square roots; mel 64 bands as a sparse matrix, one MAC per nonzero weight (counted from the
   matrix frontend.py builds); +0.001 and log on 64 values. A square root is weighted as 4 ops
   (reciprocal-sqrt estimate, one Newton step, a multiply) and a log as 20 ops (polynomial);
   every add, mul or FMA is one op. Optional polyphase resampler to 16 kHz with scipy's default
   filter (2 x 10 x max(up, down) + 1 Kaiser taps): out_rate x taps / up MACs per second.
3. ARM budget: one Cortex-A53 core at 1.2 GHz. Its Advanced SIMD datapath is 64 bits wide, so a
   128-bit FMLA.4S occupies the FP pipe for two cycles: 2 f32 FMA lanes per cycle (LLVM's
   Cortex-A53 scheduling model, llvm/lib/Target/AArch64/AArch64SchedA53.td: one FP/ASIMD
   pipe, Q-form operations ReleaseAtCycles = 2; ARM publishes no instruction timings for the A53).
   Peak 1.2 GHz x 2 = 2.4 G MAC/s = 4.8 GFLOP/s f32. Realistic efficiency for MobileNet-style
   depthwise/pointwise convolutions: 30-50 % of peak (assumption). Elementwise ops are charged
   at the same rate. Patches every 0.48 s (2.083/s); gated: only a fraction f is classified
   while the front end runs on all audio.

    python macs.py [--ghz 1.2] [--lanes 2] [--eff 0.3 0.5] [--input-rate 16000]
"""
import argparse
import math
import os
from collections import defaultdict

import common as C  # first: it pins numpy/BLAS to one thread

import numpy as np

PUBLISHED_MADDS = 69.2e6
ELEMENTWISE = {"Clip", "Relu", "QuantizeLinear", "DequantizeLinear", "Sigmoid", "Add", "Mul",
               "Sub", "Div", "Pow", "Sqrt", "Log", "Exp", "Tanh"}
MOVES = {"Reshape", "Split", "Transpose", "Squeeze", "Unsqueeze", "Slice", "Gather", "Concat",
         "Pad", "Identity", "Flatten"}


def count_graph(path):
    import onnx
    from onnx import shape_inference
    g = shape_inference.infer_shapes(onnx.load(path)).graph
    shape = {i.name: list(i.dims) for i in g.initializer}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        shape[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    const = {i.name for i in g.initializer}
    macs, elem, nodes = defaultdict(int), defaultdict(int), defaultdict(int)
    for n in g.node:
        if n.input and all(i in const or i == "" for i in n.input):
            const.update(n.output)  # weights: dequantized once at load
            continue
        out = shape.get(n.output[0])
        if not out or 0 in out:
            raise SystemExit(f"shape inference left {n.op_type} {n.output[0]} without a shape")
        size = math.prod(out)
        if n.op_type == "Conv":
            w = shape[n.input[1]]  # [Cout, Cin/group, kH, kW]
            group = next((a.i for a in n.attribute if a.name == "group"), 1)
            kind = ("depthwise" if group > 1 and w[1] == 1 else
                    "pointwise 1x1" if w[2:] == [1, 1] else f"standard {w[2]}x{w[3]}")
            key = f"Conv ({kind})"
            macs[key] += size * w[2] * w[3] * w[1]
            if len(n.input) > 2 and n.input[2]:
                elem["Conv bias add"] += size
        elif n.op_type in ("MatMul", "Gemm"):
            a, b = shape[n.input[0]], shape[n.input[1]]
            trans_b = any(x.name == "transB" and x.i for x in n.attribute)
            k = a[-1]
            key = n.op_type
            macs[key] += size * k  # output elements (batch x M x N) x K
            if n.op_type == "Gemm" and len(n.input) > 2:
                elem["Gemm bias add"] += size
            assert k == (b[-1] if trans_b else b[-2]), (a, b)
        elif n.op_type == "GlobalAveragePool":
            key = n.op_type
            elem[key] += math.prod(shape[n.input[0]])
        elif n.op_type in ELEMENTWISE:
            key = n.op_type
            elem[key] += size
        elif n.op_type in MOVES:
            key = f"{n.op_type} (data movement)"
        else:
            raise SystemExit(f"no counting rule for op {n.op_type}")
        nodes[key] += 1
    return macs, elem, nodes


def frontend_ops(input_rate):
    from frontend import MEL
    nfft, frames = 512, 100
    per_frame = {
        "window multiply": 400,
        "real FFT 512 (2.5 N log2 N)": 2.5 * nfft * math.log2(nfft),
        "magnitude re^2+im^2": 2 * 257,
        "magnitude sqrt (x4)": 4 * 257,
        f"mel ({np.count_nonzero(MEL)} nonzero weights)": np.count_nonzero(MEL),
        "+0.001": 64,
        "log (x20)": 20 * 64,
    }
    per_s = {k: float(v * frames) for k, v in per_frame.items()}
    if input_rate != C.SR:
        g = math.gcd(C.SR, input_rate)
        up, down = C.SR // g, input_rate // g
        taps = 2 * 10 * max(up, down) + 1
        per_s[f"resample {input_rate}->16000 ({taps} taps, up {up})"] = C.SR * taps / up
    return per_s, int(np.count_nonzero(MEL))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ghz", type=float, default=1.2)
    ap.add_argument("--lanes", type=float, default=2, help="f32 FMA lanes per cycle (A53: 2)")
    ap.add_argument("--eff", type=float, nargs="+", default=[0.5, 0.3])
    ap.add_argument("--input-rate", type=int, default=16000, help="add a resampler from this rate")
    a = ap.parse_args()
    macs, elem, nodes = count_graph(C.need_file(C.LOGMEL_ONNX, "model"))
    fe, mel_nz = frontend_ops(a.input_rate)
    mac_total, elem_total = sum(macs.values()), sum(elem.values())
    fe_total = sum(fe.values())
    patches_s = C.SR / C.HOP

    out = ["# YAMNet on paper: MACs per patch and the CPU share on one Cortex-A53 core", ""]
    out += ["## Model (yamnet_logmel.onnx, one [96, 64] patch), counted from the graph", "",
            "| op | nodes | MACs | elementwise ops |", "|---|---:|---:|---:|"]
    for k in sorted(set(macs) | set(elem) | set(nodes), key=lambda k: (-macs.get(k, 0), -elem.get(k, 0), k)):
        out.append(f"| {k} | {nodes.get(k, '') or ''} | {macs.get(k, 0) / 1e6:.2f} M | {elem.get(k, 0) / 1e6:.3f} M |")
    out.append(f"| **total** | {sum(nodes.values())} | **{mac_total / 1e6:.2f} M** | **{elem_total / 1e6:.3f} M** |")
    out += ["", f"Published: {PUBLISHED_MADDS / 1e6:.1f} M multiply-adds per patch; counted "
            f"{mac_total / 1e6:.2f} M ({(mac_total / PUBLISHED_MADDS - 1) * 100:+.1f} %). Weight "
            "DequantizeLinear (constant, done once at load) is not counted.", ""]
    out += ["## Front end per second of audio (100 frames), on paper", "",
            "| step | ops/s |", "|---|---:|"]
    out += [f"| {k} | {v / 1e6:.3f} M |" for k, v in fe.items()]
    out += [f"| **total** | **{fe_total / 1e6:.3f} M** |", "",
            f"(Dense mel would be 257 x 64 = {257 * 64} MACs per frame instead of {mel_nz}. Run per "
            "0.975 s window every 0.48 s, as the waveform model does, the front end costs 2x: "
            "200 frames per second.)", ""]

    peak = a.ghz * 1e9 * a.lanes
    out += [f"## CPU share of one Cortex-A53 core at {a.ghz} GHz", "",
            f"Peak {peak / 1e9:.1f} G MAC/s f32 ({a.lanes:g} FMA lanes x {a.ghz} GHz = "
            f"{2 * peak / 1e9:.1f} GFLOP/s); efficiency {', '.join(f'{e:.0%}' for e in a.eff)} of peak; "
            f"{patches_s:.3f} patches per second (hop 0.48 s); the front end runs on all audio, the model "
            "on a fraction f of the patches. Model cost = MACs + elementwise ops of the graph.", "",
            "| f classified | model M ops/s | front end M ops/s | total M ops/s | "
            + " | ".join(f"CPU share at {e:.0%}" for e in a.eff) + " |",
            "|---:|---:|---:|---:|" + "---:|" * len(a.eff)]
    rows = []
    for f in (1.0, 0.25, 0.1, 0.05, 0.02):
        model = f * patches_s * (mac_total + elem_total)
        total = model + fe_total
        shares = [total / (peak * e) for e in a.eff]
        rows.append({"f": f, "model_ops_s": model, "frontend_ops_s": fe_total, "shares": shares})
        out.append(f"| {f:g}{' (ungated)' if f == 1 else ''} | {model / 1e6:.1f} | {fe_total / 1e6:.2f} | "
                   f"{total / 1e6:.1f} | " + " | ".join(f"{s:.1%}" for s in shares) + " |")
    mac_only = [patches_s * mac_total / (peak * e) for e in a.eff]
    out += ["", "Ungated, MACs alone: " + ", ".join(f"{s:.1%} at {e:.0%}" for s, e in zip(mac_only, a.eff))
            + ". Not in the estimate: int8 kernels (ARMv8.0 has no SDOT; SMLAL gives 16-bit lanes), "
            "memory stalls beyond the efficiency factor, decoding, meters and the rest of earshot."]
    text = "\n".join(out) + "\n"
    print(text)
    os.makedirs(C.OUT_DIR, exist_ok=True)
    with open(os.path.join(C.OUT_DIR, "arm_budget.md"), "w") as fh:
        fh.write(text)
    C.write_json("macs.json", {"model_macs": dict(macs), "model_elementwise": dict(elem),
                               "model_macs_total": mac_total, "model_elementwise_total": elem_total,
                               "published_madds": PUBLISHED_MADDS, "frontend_ops_per_s": fe,
                               "peak_macs_per_s": peak, "efficiencies": a.eff, "budget": rows})
    print(f"-> {os.path.join(C.OUT_DIR, 'arm_budget.md')}")


if __name__ == "__main__":
    main()
