//! Depthwise 2-D convolution with the channel as the inner, vectorized loop, swapped in for
//! tract's `DepthWiseConv` in the YAMNet classifier.
//!
//! Why: tract 0.22 runs a depthwise convolution channel by channel and output by output, with
//! a scalar loop over the kernel (only 2×2 kernels get an unrolled path). YAMNet's 13 depthwise
//! layers are 3×3 and took 40 % of a patch (`cargo run --release --example model_profile`).
//! Here each output pixel is `bias + Σ input[iy, ix, :] · kernel[ky, kx, :]` over the kernel
//! taps that fall inside the input. Channels last (NHWC), one pixel's channels are the inner
//! loop; channels first (NCHW, which YAMNet's decluttered graph has), each tap is added to a
//! whole output row at once. Either way the inner loop is contiguous and compiles to packed
//! multiply-adds.
//!
//! [`replace_depthwise`] rewrites every float `Conv` of a decluttered tract model whose group
//! count equals its input and output channels (ONNX `Conv` with `group = C`, TensorFlow's
//! depthwise convolution), with constant kernel and bias and a 2-D concrete input, into
//! [`DepthwiseConv`]. The arithmetic is the convolution ONNX defines (zero padding, strides,
//! dilations); only the order of the additions differs from tract's.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat};
use tract_onnx::tract_core::ops::nn::DataFormat;

/// A depthwise convolution over a `[N, H, W, C]` or `[N, C, H, W]` (or batch-less) f32 input,
/// one `kh × kw` kernel per channel, with its geometry resolved at load time.
#[derive(Debug, Clone, PartialEq)]
pub struct DepthwiseConv {
    /// Data layout of input and output.
    pub format: DataFormat,
    /// Input spatial size, `[H, W]` in values.
    pub input_hw: [usize; 2],
    /// Output spatial size, `[OH, OW]`.
    pub output_hw: [usize; 2],
    /// Channels `C`.
    pub channels: usize,
    /// Kernel size `[kh, kw]`.
    pub kernel_hw: [usize; 2],
    /// Strides `[sy, sx]`.
    pub strides: [usize; 2],
    /// Dilations `[dy, dx]`.
    pub dilations: [usize; 2],
    /// Zero padding before each spatial axis, `[top, left]`.
    pub pad_before: [usize; 2],
    /// Kernel as `[kh][kw][C]`, channel innermost.
    pub kernel: Arc<Vec<f32>>,
    /// Bias, `C` values.
    pub bias: Arc<Vec<f32>>,
}

/// Output rows at least this long are computed channels-first, a row at a time; shorter ones
/// through a channels-last copy (YAMNet's late layers are 4 or 2 wide with 512–1024 channels).
/// Measured with `examples/model_profile.rs` on YAMNet: with the register-blocked channels-last
/// loop and tiled transposes, even YAMNet's widest rows (32, its second layer) are faster
/// through the copy (about 300 → 220 µs per patch); before them, rows of 32 were faster in
/// place and rows of 8 and less 2–3× faster through the copy.
const CHW_MIN_ROW: usize = 64;

/// Channels accumulated together in registers by [`DepthwiseConv::image_hwc`]: eight 128-bit
/// vectors (SSE2, NEON), so that eight independent additions are in flight per kernel tap (with
/// four, the adds waited on each other's latency: `perf annotate` of the op on YAMNet's layers).
const BLOCK: usize = 32;

#[derive(Default)]
struct Scratch {
    taps: Vec<(usize, usize)>,
    input: Vec<f32>,
    output: Vec<f32>,
}

impl DepthwiseConv {
    fn output_shape(&self, batch: Option<usize>) -> TVec<usize> {
        let [oh, ow] = self.output_hw;
        let c = self.channels;
        let mut shape: TVec<usize> = batch.into_iter().collect();
        if self.format.c_is_last() {
            shape.extend([oh, ow, c]);
        } else {
            shape.extend([c, oh, ow]);
        }
        shape
    }

    /// Computes one image: `input` and `output` in `self.format` without the batch axis.
    fn image(&self, input: &[f32], output: &mut [f32], scratch: &mut Scratch) {
        if self.format.c_is_last() {
            self.image_hwc(input, output, &mut scratch.taps);
        } else if self.output_hw[1] >= CHW_MIN_ROW {
            self.image_chw(input, output);
        } else {
            // Short rows: transpose to channels last, where the loop runs over C instead.
            let [h, w] = self.input_hw;
            let [oh, ow] = self.output_hw;
            let c = self.channels;
            scratch.input.resize(h * w * c, 0.0);
            transpose(input, &mut scratch.input, c, h * w);
            scratch.output.resize(oh * ow * c, 0.0);
            let (x, y, taps) = (&scratch.input, &mut scratch.output, &mut scratch.taps);
            self.image_hwc(x, y, taps);
            transpose(&scratch.output, output, oh * ow, c);
        }
    }

    /// Channels last: all channels of one output pixel at once, [`BLOCK`] channels at a time
    /// held in registers across the kernel taps (then the rest one by one). The sum runs in
    /// the order bias, then the taps row by row: the order of [`Self::image_chw`].
    fn image_hwc(&self, input: &[f32], output: &mut [f32], taps: &mut Vec<(usize, usize)>) {
        let [h, w] = self.input_hw;
        let [oh, ow] = self.output_hw;
        let [kh, kw] = self.kernel_hw;
        let c = self.channels;
        let kernel = &self.kernel[..];
        for oy in 0..oh {
            for ox in 0..ow {
                // (input offset, kernel offset) of the taps that fall inside the input.
                taps.clear();
                for ky in 0..kh {
                    let Some(iy) = self.tap(0, oy, ky, h) else {
                        continue;
                    };
                    for kx in 0..kw {
                        if let Some(ix) = self.tap(1, ox, kx, w) {
                            taps.push(((iy * w + ix) * c, (ky * kw + kx) * c));
                        }
                    }
                }
                let out = &mut output[(oy * ow + ox) * c..(oy * ow + ox + 1) * c];
                let blocks = c / BLOCK * BLOCK;
                for (b, out) in out[..blocks].chunks_exact_mut(BLOCK).enumerate() {
                    let b = b * BLOCK;
                    let mut acc = [0.0f32; BLOCK];
                    acc.copy_from_slice(&self.bias[b..b + BLOCK]);
                    for &(xi, ki) in taps.iter() {
                        let x: &[f32; BLOCK] = input[xi + b..xi + b + BLOCK].try_into().unwrap();
                        let k: &[f32; BLOCK] = kernel[ki + b..ki + b + BLOCK].try_into().unwrap();
                        for j in 0..BLOCK {
                            acc[j] += x[j] * k[j];
                        }
                    }
                    out.copy_from_slice(&acc);
                }
                for (ch, o) in out.iter_mut().enumerate().skip(blocks) {
                    let mut a = self.bias[ch];
                    for &(xi, ki) in taps.iter() {
                        a += input[xi + ch] * kernel[ki + ch];
                    }
                    *o = a;
                }
            }
        }
    }

    /// Channels first: one plane at a time, each kernel tap added to a whole output row.
    fn image_chw(&self, input: &[f32], output: &mut [f32]) {
        let [h, w] = self.input_hw;
        let [oh, ow] = self.output_hw;
        let [kh, kw] = self.kernel_hw;
        let c = self.channels;
        let (sx, dx, px) = (self.strides[1], self.dilations[1], self.pad_before[1]);
        for ch in 0..c {
            let plane = &input[ch * h * w..(ch + 1) * h * w];
            let out = &mut output[ch * oh * ow..(ch + 1) * oh * ow];
            for oy in 0..oh {
                let row = &mut out[oy * ow..(oy + 1) * ow];
                row.fill(self.bias[ch]);
                for ky in 0..kh {
                    let Some(iy) = self.tap(0, oy, ky, h) else {
                        continue;
                    };
                    let in_row = &plane[iy * w..(iy + 1) * w];
                    for kx in 0..kw {
                        let k = self.kernel[(ky * kw + kx) * c + ch];
                        // Outputs whose tap lands inside the row: ox·sx + kx·dx − px ∈ [0, w).
                        let off = kx * dx;
                        let first = px.saturating_sub(off).div_ceil(sx);
                        let Some(last) = (w - 1 + px).checked_sub(off) else {
                            continue;
                        };
                        let end = (last / sx + 1).min(ow);
                        if first >= end {
                            continue;
                        }
                        let start_in = first * sx + off - px;
                        if sx == 1 {
                            let src = &in_row[start_in..start_in + (end - first)];
                            for (o, x) in row[first..end].iter_mut().zip(src) {
                                *o += k * x;
                            }
                        } else {
                            for (o, x) in row[first..end]
                                .iter_mut()
                                .zip(in_row[start_in..].iter().step_by(sx))
                            {
                                *o += k * x;
                            }
                        }
                    }
                }
            }
        }
    }

    /// The input index along spatial `axis` read by output `o` through kernel tap `k`, if it
    /// lies inside the input (outside is zero padding).
    #[inline]
    fn tap(&self, axis: usize, o: usize, k: usize, len: usize) -> Option<usize> {
        (o * self.strides[axis] + k * self.dilations[axis])
            .checked_sub(self.pad_before[axis])
            .filter(|&i| i < len)
    }
}

/// Writes the `rows × cols` row-major matrix `src` transposed into `dst` (`cols × rows`), in
/// tiles of [`TILE`]² so that both sides stay in cache (element by element, the strided side
/// made the two transposes of a short-row layer cost more than its arithmetic).
fn transpose(src: &[f32], dst: &mut [f32], rows: usize, cols: usize) {
    debug_assert!(src.len() == rows * cols && dst.len() == rows * cols);
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            if r0 + TILE <= rows && c0 + TILE <= cols {
                // A full tile through a fixed-size buffer, which the compiler keeps in registers
                // and shuffles.
                let mut tile = [[0.0f32; TILE]; TILE];
                for (i, t) in tile.iter_mut().enumerate() {
                    let at = (r0 + i) * cols + c0;
                    t.copy_from_slice(&src[at..at + TILE]);
                }
                for j in 0..TILE {
                    let at = (c0 + j) * rows + r0;
                    let out: &mut [f32; TILE] = (&mut dst[at..at + TILE]).try_into().unwrap();
                    for (o, row) in out.iter_mut().zip(&tile) {
                        *o = row[j];
                    }
                }
            } else {
                for r in r0..(r0 + TILE).min(rows) {
                    for c in c0..(c0 + TILE).min(cols) {
                        dst[c * rows + r] = src[r * cols + c];
                    }
                }
            }
        }
    }
}

/// Side of [`transpose`]'s tiles, in values.
const TILE: usize = 8;

impl Op for DepthwiseConv {
    fn name(&self) -> StaticName {
        "EarshotDepthwiseConv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{:?} in {:?} out {:?} C {} kernel {:?} strides {:?} dilations {:?} pad {:?}",
            self.format,
            self.input_hw,
            self.output_hw,
            self.channels,
            self.kernel_hw,
            self.strides,
            self.dilations,
            self.pad_before
        )])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for DepthwiseConv {
    fn is_stateless(&self) -> bool {
        true
    }

    fn eval(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = &inputs[0];
        let batch = self.format.has_n().then(|| input.shape()[0]);
        let [h, w] = self.input_hw;
        let per_image_in = h * w * self.channels;
        let per_image_out = self.output_hw[0] * self.output_hw[1] * self.channels;
        let xs = input.as_slice::<f32>()?;
        if xs.len() != batch.unwrap_or(1) * per_image_in {
            bail!(
                "EarshotDepthwiseConv: input shape {:?} does not match {:?}",
                input.shape(),
                self
            );
        }
        let mut out = Tensor::zero::<f32>(&self.output_shape(batch))?;
        let mut scratch = Scratch::default();
        for (x, y) in xs
            .chunks_exact(per_image_in)
            .zip(out.as_slice_mut::<f32>()?.chunks_exact_mut(per_image_out))
        {
            self.image(x, y, &mut scratch);
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for DepthwiseConv {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let batch = if self.format.has_n() {
            Some(
                inputs[0].shape[0]
                    .to_usize()
                    .context("EarshotDepthwiseConv needs a concrete batch")?,
            )
        } else {
            None
        };
        Ok(tvec!(f32::fact(self.output_shape(batch))))
    }

    fn cost(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let macs = self.output_hw[0] * self.output_hw[1] * self.channels * self.kernel.len()
            / self.channels.max(1);
        Ok(tvec!((Cost::FMA(f32::datum_type()), macs.into())))
    }

    as_op!();
}

/// Replaces every eligible depthwise `Conv` of `model` (see the module docs) by a
/// [`DepthwiseConv`]; returns how many were replaced. Run it on a decluttered model, before
/// `into_optimized`, which would otherwise lower them to tract's own depthwise op.
///
/// # Errors
/// tract's error if a patch cannot be applied (a malformed graph).
pub fn replace_depthwise(model: &mut TypedModel) -> TractResult<usize> {
    let mut count = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(conv) = node.op_as::<Conv>() else {
            continue;
        };
        let Some(op) = depthwise_for(model, node, conv)? else {
            continue;
        };
        let patch = TypedModelPatch::replace_single_op(model, node, &node.inputs[..1], op)?;
        patch.apply(model)?;
        count += 1;
    }
    if count > 0 {
        *model = std::mem::take(model).into_compact()?;
    }
    Ok(count)
}

fn depthwise_for(
    model: &TypedModel,
    node: &TypedNode,
    conv: &Conv,
) -> TractResult<Option<DepthwiseConv>> {
    let spec = &conv.pool_spec;
    let c = spec.input_channels;
    if conv.q_params.is_some()
        || conv.group != c
        || spec.output_channels != c
        || c < 2
        || spec.kernel_shape.len() != 2
        || node.inputs.len() != 3
    {
        return Ok(None);
    }
    let x = model.outlet_fact(node.inputs[0])?;
    let (Some(kernel), Some(bias)) = (
        model.outlet_fact(node.inputs[1])?.konst.clone(),
        model.outlet_fact(node.inputs[2])?.konst.clone(),
    ) else {
        return Ok(None);
    };
    let Some(shape) = x.shape.as_concrete() else {
        return Ok(None);
    };
    if x.datum_type != f32::datum_type()
        || kernel.datum_type() != f32::datum_type()
        || bias.datum_type() != f32::datum_type()
    {
        return Ok(None);
    }
    let data = spec.data_format.shape(shape.to_vec())?;
    let hw = data.hw_dims();
    if hw.len() != 2 || *data.c() != c {
        return Ok(None);
    }
    let (kh, kw) = (spec.kernel_shape[0], spec.kernel_shape[1]);
    let strides = spec.strides();
    let dilations = spec.dilations();
    let geo = spec
        .padding
        .compute(hw, &spec.kernel_shape, &dilations, &strides);
    // Kernel to [kh][kw][C] from its declared format (one input channel per group).
    let k = kernel.as_slice::<f32>()?;
    if k.len() != kh * kw * c {
        return Ok(None);
    }
    let mut packed = vec![0.0f32; kh * kw * c];
    for ch in 0..c {
        for ky in 0..kh {
            for kx in 0..kw {
                let src = match conv.kernel_fmt {
                    KernelFormat::OIHW => (ch * kh + ky) * kw + kx,
                    KernelFormat::HWIO => (ky * kw + kx) * c + ch,
                    KernelFormat::OHWI => (ch * kh + ky) * kw + kx,
                };
                packed[(ky * kw + kx) * c + ch] = k[src];
            }
        }
    }
    let b = bias.as_slice::<f32>()?;
    let bias = match b.len() {
        1 => vec![b[0]; c],
        n if n == c => b.to_vec(),
        _ => return Ok(None),
    };
    Ok(Some(DepthwiseConv {
        format: spec.data_format,
        input_hw: [hw[0], hw[1]],
        output_hw: [geo[0].convoluted, geo[1].convoluted],
        channels: c,
        kernel_hw: [kh, kw],
        strides: [strides[0], strides[1]],
        dilations: [dilations[0], dilations[1]],
        pad_before: [geo[0].pad_before, geo[1].pad_before],
        kernel: Arc::new(packed),
        bias: Arc::new(bias),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ONNX definition, written out the slow, obvious way on NCHW data.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        x: &[f32],
        c: usize,
        h: usize,
        w: usize,
        k: &[f32], // [C][kh][kw]
        bias: &[f32],
        kh: usize,
        kw: usize,
        stride: usize,
        pad: usize,
        oh: usize,
        ow: usize,
    ) -> Vec<f32> {
        let mut out = vec![0.0; c * oh * ow];
        for ch in 0..c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = f64::from(bias[ch]);
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let iy = (oy * stride + ky) as isize - pad as isize;
                            let ix = (ox * stride + kx) as isize - pad as isize;
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                s += f64::from(x[(ch * h + iy as usize) * w + ix as usize])
                                    * f64::from(k[(ch * kh + ky) * kw + kx]);
                            }
                        }
                    }
                    out[(ch * oh + oy) * ow + ox] = s as f32;
                }
            }
        }
        out
    }

    fn op(
        format: DataFormat,
        c: usize,
        w: usize,
        k_chw: &[f32],
        bias: &[f32],
        stride: usize,
    ) -> DepthwiseConv {
        let h = 7;
        let mut packed = vec![0.0; 9 * c];
        for ch in 0..c {
            for t in 0..9 {
                packed[t * c + ch] = k_chw[ch * 9 + t];
            }
        }
        let out = |n: usize| (n + 2 - 3) / stride + 1;
        DepthwiseConv {
            format,
            input_hw: [h, w],
            output_hw: [out(h), out(w)],
            channels: c,
            kernel_hw: [3, 3],
            strides: [stride, stride],
            dilations: [1, 1],
            pad_before: [1, 1],
            kernel: Arc::new(packed),
            bias: Arc::new(bias.to_vec()),
        }
    }

    #[test]
    fn matches_the_definition_in_both_layouts_with_padding_and_stride() {
        // Width 6: short rows (through the channels-last copy); 70: rows of 70 computed
        // channels-first in place and, with stride 2, rows of 35 through the copy. 5 channels:
        // one at a time; 37: a register block of 32, then 5 one at a time.
        for c in [5, 37] {
            for w in [6, 70] {
                matches_the_definition(c, w);
            }
        }
    }

    fn matches_the_definition(c: usize, w: usize) {
        let h = 7;
        let x: Vec<f32> = (0..c * h * w)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.1)
            .collect();
        let k: Vec<f32> = (0..c * 9)
            .map(|i| ((i * 13 % 17) as f32 - 8.0) * 0.05)
            .collect();
        let bias: Vec<f32> = (0..c).map(|i| i as f32 * 0.25 - 0.5).collect();
        for stride in [1, 2] {
            let nchw = op(DataFormat::NCHW, c, w, &k, &bias, stride);
            let [oh, ow] = nchw.output_hw;
            let want = reference(&x, c, h, w, &k, &bias, 3, 3, stride, 1, oh, ow);
            let input = Tensor::from_shape(&[1, c, h, w], &x).unwrap();
            let got = nchw.eval(tvec!(input.into_tvalue())).unwrap();
            assert_eq!(got[0].shape(), &[1, c, oh, ow]);
            let got = got[0].as_slice::<f32>().unwrap();
            for (g, r) in got.iter().zip(&want) {
                assert!((g - r).abs() < 1e-5, "stride {stride}: {g} vs {r}");
            }
            // The same data as NHWC gives the same numbers, transposed.
            let nhwc = DepthwiseConv {
                format: DataFormat::NHWC,
                ..nchw.clone()
            };
            let mut x_hwc = vec![0.0; x.len()];
            for ch in 0..c {
                for i in 0..h * w {
                    x_hwc[i * c + ch] = x[ch * h * w + i];
                }
            }
            let input = Tensor::from_shape(&[1, h, w, c], &x_hwc).unwrap();
            let got = nhwc.eval(tvec!(input.into_tvalue())).unwrap();
            assert_eq!(got[0].shape(), &[1, oh, ow, c]);
            let got = got[0].as_slice::<f32>().unwrap();
            for ch in 0..c {
                for i in 0..oh * ow {
                    let (g, r) = (got[i * c + ch], want[ch * oh * ow + i]);
                    assert!((g - r).abs() < 1e-5, "NHWC stride {stride}: {g} vs {r}");
                }
            }
        }
    }

    #[test]
    fn a_wrong_input_size_is_an_error_not_a_panic() {
        let k = vec![0.0; 45];
        let op = op(DataFormat::NCHW, 5, 6, &k, &[0.0; 5], 1);
        let input = Tensor::from_shape(&[1, 5, 7, 5], &vec![0.0f32; 175]).unwrap();
        assert!(op.eval(tvec!(input.into_tvalue())).is_err());
    }
}
