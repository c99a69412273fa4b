//! Activation fake-quantization: an ONNX `QuantizeLinear` → `DequantizeLinear` pair fused into
//! one element-wise f32 op, so tract runs YAMNet's int8 QDQ graph without a libm call per value.
//!
//! Why: YAMNet's int8 graph (`yamnet_logmel.onnx`) quantizes every activation and dequantizes
//! it right away (the QDQ format). tract 0.22 runs the pair as two ops, and its quantize step
//! rounds with `f32::round` (a libm call on baseline x86-64 and ARMv7), which made the 30
//! quantize nodes 23 % of a patch's time (`cargo run --release --example model_profile`).
//!
//! The fused op computes exactly what the two ONNX operators define (ONNX operator docs,
//! `QuantizeLinear`-10/13 and `DequantizeLinear`-10/13, per-tensor scale and zero point):
//!
//! ```text
//! q = saturate(round_half_to_even(x / q_scale) + q_zero_point)   to [qmin, qmax]
//! y = (q − dq_zero_point) · dq_scale
//! ```
//!
//! with `[qmin, qmax]` = [−128, 127] for int8 and [0, 255] for uint8, as onnxruntime does. The
//! rounding is the add-and-subtract of 1.5 · 2²³ (exact, ties to even, for |v| < 2²²; `v` is
//! clamped to the integer range first, which rounding cannot leave), and the loop vectorizes.

use tract_onnx::pb::{tensor_proto::DataType, AttributeProto, ModelProto, NodeProto, TensorProto};
use tract_onnx::tract_core::ops::element_wise::ElementWiseMiniOp;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::element_wise::ElementWiseOp;
use tract_onnx::tract_hir::ops::expandable::expand;

/// The ONNX op type the fused pairs are rewritten to (not a standard op; only Earshot's parser
/// knows it).
pub const OP_TYPE: &str = "EarshotFakeQuantize";

/// One fused `QuantizeLinear` → `DequantizeLinear` pair with per-tensor parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeQuantize {
    /// `QuantizeLinear`'s `y_scale` (> 0, finite).
    pub q_scale: f32,
    /// `QuantizeLinear`'s `y_zero_point`.
    pub q_zero_point: i32,
    /// `DequantizeLinear`'s `x_scale`.
    pub dq_scale: f32,
    /// `DequantizeLinear`'s `x_zero_point`.
    pub dq_zero_point: i32,
    /// Saturation range of the quantized type: −128..=127 (int8) or 0..=255 (uint8).
    pub qmin: i32,
    /// Upper end of the saturation range.
    pub qmax: i32,
}

/// 1.5 · 2²³: adding and subtracting it rounds an f32 of magnitude < 2²² to the nearest
/// integer, ties to even (IEEE 754 default rounding).
const ROUND_MAGIC: f32 = 12_582_912.0;

impl FakeQuantize {
    /// Applies the pair to one value (the formula in the module docs). NaN saturates to
    /// `qmin`.
    #[inline]
    pub fn apply(&self, x: f32) -> f32 {
        let mut one = [x];
        self.apply_slice(&mut one);
        one[0]
    }

    fn apply_slice(&self, xs: &mut [f32]) {
        let lo = (self.qmin - self.q_zero_point) as f32;
        let hi = (self.qmax - self.q_zero_point) as f32;
        let (s, shift, ds) = (
            self.q_scale,
            (self.q_zero_point - self.dq_zero_point) as f32,
            self.dq_scale,
        );
        // Plain comparisons (not f32::max/min, which treat NaN specially) so the loop
        // compiles to packed compare-and-select; a NaN fails `v >= lo` and lands on `lo`.
        for x in xs {
            let v = *x / s;
            let v = if v >= lo {
                if v > hi {
                    hi
                } else {
                    v
                }
            } else {
                lo
            };
            // |v| ≤ 256 here, well inside the trick's exact range.
            let r = (v + ROUND_MAGIC) - ROUND_MAGIC;
            *x = (r + shift) * ds;
        }
    }
}

impl ElementWiseMiniOp for FakeQuantize {
    fn name(&self) -> String {
        "FakeQuantize".into()
    }

    fn eval_in_place(&self, t: &mut Tensor, out_dt: Option<DatumType>) -> TractResult<()> {
        if out_dt.is_some_and(|dt| dt != f32::datum_type()) {
            bail!("FakeQuantize computes f32, asked for {out_dt:?}");
        }
        self.apply_slice(t.as_slice_mut::<f32>()?);
        Ok(())
    }

    fn operating_datum_type(&self, _dt: DatumType) -> DatumType {
        f32::datum_type()
    }

    fn same_as(&self, other: &dyn ElementWiseMiniOp) -> bool {
        other.downcast_ref::<Self>().is_some_and(|o| o == self)
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{self:?}")])
    }
}

/// Registers [`OP_TYPE`] with a tract ONNX parser.
pub fn register(onnx: &mut tract_onnx::Onnx) {
    onnx.op_register.insert(OP_TYPE, parse);
}

fn parse(
    _ctx: &tract_onnx::model::ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let float = |name: &str| -> TractResult<f32> {
        node.attribute
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.f)
            .with_context(|| format!("{OP_TYPE} node '{}' has no attribute {name}", node.name))
    };
    let int = |name: &str| -> TractResult<i32> {
        let v = node
            .attribute
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.i)
            .with_context(|| format!("{OP_TYPE} node '{}' has no attribute {name}", node.name))?;
        i32::try_from(v).map_err(|_| format_err!("{OP_TYPE} node '{}': {name} = {v}", node.name))
    };
    let op = FakeQuantize {
        q_scale: float("q_scale")?,
        q_zero_point: int("q_zero_point")?,
        dq_scale: float("dq_scale")?,
        dq_zero_point: int("dq_zero_point")?,
        qmin: int("qmin")?,
        qmax: int("qmax")?,
    };
    Ok((expand(FusedExpansion(ElementWiseOp(Box::new(op)))), vec![]))
}

/// tract-hir's element-wise expansion under its own name, so profiles say what ran.
#[derive(Debug, Clone)]
struct FusedExpansion(ElementWiseOp);

impl Expansion for FusedExpansion {
    fn name(&self) -> StaticName {
        "FakeQuantize".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        self.0.rules(s, inputs, outputs)
    }

    fn wire(
        &self,
        prefix: &str,
        target: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        self.0.wire(prefix, target, inputs)
    }
}

/// (scale, zero point, qmin, qmax) of a `QuantizeLinear` or `DequantizeLinear` node whose scale
/// and zero point are constant scalars (an f32 scale > 0; an int8 or uint8 zero point, or none,
/// which ONNX defines as uint8 0); `None` for anything else.
fn quant_params(initializers: &[TensorProto], node: &NodeProto) -> Option<(f32, i32, i32, i32)> {
    let init = |name: &str| initializers.iter().find(|t| t.name == name);
    let scale = init(node.input.get(1)?)?;
    let scale = match crate::onnx_fold::floats(scale).ok()?.as_slice() {
        [s] if s.is_finite() && *s > 0.0 => *s,
        _ => return None,
    };
    let (zp, qmin, qmax) = match node.input.get(2).filter(|n| !n.is_empty()) {
        None => (0, 0, 255),
        Some(name) => {
            let t = init(name)?;
            let range = match t.data_type {
                x if x == DataType::Int8 as i32 => (-128, 127),
                x if x == DataType::Uint8 as i32 => (0, 255),
                _ => return None,
            };
            match crate::onnx_fold::ints(t).ok()?.as_slice() {
                [z] => (*z, range.0, range.1),
                _ => return None,
            }
        }
    };
    Some((scale, zp, qmin, qmax))
}

/// Removes every `Clip` (min and max as constant scalar inputs, ONNX `Clip`-11/13) whose output
/// only a `QuantizeLinear` with constant scalar parameters reads, when that quantization
/// saturates at both bounds anyway: the `QuantizeLinear` then reads the `Clip`'s input. Returns
/// how many were removed.
///
/// Exact, not approximate: `QuantizeLinear` is monotonic, so `Q(clip(x, lo, hi)) = Q(x)` for
/// every `x` (NaN included: both give `qmin`) exactly when `Q(lo) = qmin` and `Q(hi) = qmax`.
/// YAMNet's activations are all quantized with scale 6/255 and zero point −128, whose range is
/// [0, 6]: each Relu6 (`Clip(0, 6)`) before a quantization is implied by it, and after its 13
/// depthwise convolutions and the first convolution tract ran it as two passes of its own (about
/// 3 % of a patch, `examples/model_profile.rs`).
pub fn drop_clips_implied_by_quantize(model: &mut ModelProto) -> usize {
    let Some(graph) = model.graph.as_mut() else {
        return 0;
    };
    let scalar = |name: Option<&String>| -> Option<Option<f32>> {
        match name.filter(|n| !n.is_empty()) {
            None => Some(None), // no bound on that side
            Some(name) => {
                let t = graph.initializer.iter().find(|t| &t.name == name)?;
                match crate::onnx_fold::floats(t).ok()?.as_slice() {
                    [v] if !v.is_nan() => Some(Some(*v)),
                    _ => None,
                }
            }
        }
    };
    let mut readers: std::collections::HashMap<&str, Vec<usize>> = Default::default();
    for (i, n) in graph.node.iter().enumerate() {
        for x in &n.input {
            readers.entry(x.as_str()).or_default().push(i);
        }
    }
    let outputs: std::collections::HashSet<&str> =
        graph.output.iter().map(|o| o.name.as_str()).collect();
    let mut rewires: Vec<(usize, usize)> = Vec::new(); // (clip, quantize)
    for (ci, clip) in graph.node.iter().enumerate() {
        if clip.op_type != "Clip" || clip.input.is_empty() || clip.output.len() != 1 {
            continue;
        }
        if clip
            .attribute
            .iter()
            .any(|a| a.name == "min" || a.name == "max")
        {
            continue; // Clip-6's attribute form
        }
        let out = clip.output[0].as_str();
        let qi = match readers.get(out).map(Vec::as_slice) {
            Some([qi]) if !outputs.contains(out) => *qi,
            _ => continue,
        };
        let q = &graph.node[qi];
        if q.op_type != "QuantizeLinear" || q.input.first().map(String::as_str) != Some(out) {
            continue;
        }
        let (Some(lo), Some(hi), Some((scale, zp, qmin, qmax))) = (
            scalar(clip.input.get(1)),
            scalar(clip.input.get(2)),
            quant_params(&graph.initializer, q),
        ) else {
            continue;
        };
        let quantize = |v: f32| {
            ((v / scale).round_ties_even() as i64 + i64::from(zp))
                .clamp(i64::from(qmin), i64::from(qmax))
        };
        let lo_ok = lo.is_none_or(|v| quantize(v) == i64::from(qmin));
        let hi_ok = hi.is_none_or(|v| quantize(v) == i64::from(qmax));
        if lo_ok && hi_ok {
            rewires.push((ci, qi));
        }
    }
    for &(ci, qi) in &rewires {
        graph.node[qi].input[0] = graph.node[ci].input[0].clone();
    }
    let dropped: std::collections::HashSet<usize> = rewires.iter().map(|r| r.0).collect();
    let mut i = 0;
    graph.node.retain(|_| {
        i += 1;
        !dropped.contains(&(i - 1))
    });
    rewires.len()
}

/// Rewrites every `DequantizeLinear` fed by a `QuantizeLinear`, both with constant scalar scale
/// and zero point, into one [`OP_TYPE`] node; drops `QuantizeLinear` nodes and initializers no
/// node uses any more. Pairs with per-axis parameters, or a quantized value read by anything
/// but a `DequantizeLinear` (or a graph output), are left as they are. Returns how many pairs
/// were fused. A scale or zero point of a type other than f32 / int8 / uint8 leaves its pair
/// unfused; so does a pair with anything between the two nodes (YAMNet's input quantization and
/// its last one have a Reshape there and stay with tract).
pub fn fuse_quantize_dequantize(model: &mut ModelProto) -> usize {
    let Some(graph) = model.graph.as_mut() else {
        return 0;
    };
    let params = |node: &NodeProto| quant_params(&graph.initializer, node);
    let producers: std::collections::HashMap<&str, &NodeProto> = graph
        .node
        .iter()
        .filter(|n| n.op_type == "QuantizeLinear")
        .filter_map(|n| Some((n.output.first()?.as_str(), n)))
        .collect();
    let mut replaced: Vec<(usize, NodeProto)> = Vec::new();
    for (i, dq) in graph.node.iter().enumerate() {
        if dq.op_type != "DequantizeLinear" {
            continue;
        }
        let Some(q) = dq.input.first().and_then(|x| producers.get(x.as_str())) else {
            continue;
        };
        let (Some((qs, qz, qmin, qmax)), Some((ds, dz, _, _))) = (params(q), params(dq)) else {
            continue;
        };
        let attr_f = |name: &str, f: f32| AttributeProto {
            name: name.into(),
            f,
            r#type: 1, // FLOAT
            ..AttributeProto::default()
        };
        let attr_i = |name: &str, i: i32| AttributeProto {
            name: name.into(),
            i: i64::from(i),
            r#type: 2, // INT
            ..AttributeProto::default()
        };
        replaced.push((
            i,
            NodeProto {
                name: format!("{}+{}", q.name, dq.name),
                op_type: OP_TYPE.into(),
                input: vec![q.input[0].clone()],
                output: dq.output.clone(),
                attribute: vec![
                    attr_f("q_scale", qs),
                    attr_i("q_zero_point", qz),
                    attr_f("dq_scale", ds),
                    attr_i("dq_zero_point", dz),
                    attr_i("qmin", qmin),
                    attr_i("qmax", qmax),
                ],
                ..NodeProto::default()
            },
        ));
    }
    let count = replaced.len();
    for (i, node) in replaced {
        graph.node[i] = node;
    }
    // QuantizeLinear nodes whose output nobody reads any more, then their dead initializers.
    let used = |graph: &tract_onnx::pb::GraphProto| -> std::collections::HashSet<String> {
        graph
            .node
            .iter()
            .flat_map(|n| n.input.iter().cloned())
            .chain(graph.output.iter().map(|o| o.name.clone()))
            .collect()
    };
    let read = used(graph);
    graph
        .node
        .retain(|n| n.op_type != "QuantizeLinear" || n.output.iter().any(|o| read.contains(o)));
    let read = used(graph);
    graph
        .initializer
        .retain(|t: &TensorProto| read.contains(&t.name));
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(scale: f32, zp: i32) -> FakeQuantize {
        FakeQuantize {
            q_scale: scale,
            q_zero_point: zp,
            dq_scale: scale,
            dq_zero_point: zp,
            qmin: -128,
            qmax: 127,
        }
    }

    /// The ONNX definition written out the slow, obvious way.
    fn reference(op: &FakeQuantize, x: f32) -> f32 {
        let q = ((x / op.q_scale).round_ties_even() as i64 + i64::from(op.q_zero_point))
            .clamp(i64::from(op.qmin), i64::from(op.qmax));
        (q - i64::from(op.dq_zero_point)) as f32 * op.dq_scale
    }

    #[test]
    fn matches_the_onnx_definition_including_ties_and_saturation() {
        let op = q(0.048, 16);
        // Exact ties at scale 0.5: 0.25 → 0.5 → 0 (even), 0.75 → 1.5 → 2.
        let half = q(0.5, 0);
        assert_eq!(half.apply(0.25), 0.0);
        assert_eq!(half.apply(0.75), 1.0);
        assert_eq!(half.apply(-0.25), 0.0);
        assert_eq!(half.apply(1.25), 1.0);
        // Saturation at both ends, and far beyond the rounding trick's range.
        assert_eq!(op.apply(1e9), (127 - 16) as f32 * 0.048);
        assert_eq!(op.apply(-1e9), (-128 - 16) as f32 * 0.048);
        assert_eq!(op.apply(f32::INFINITY), (127 - 16) as f32 * 0.048);
        assert_eq!(op.apply(f32::NEG_INFINITY), (-128 - 16) as f32 * 0.048);
        assert!(op.apply(f32::NAN).is_finite());
        let mut x = -9.0f32;
        while x < 9.0 {
            assert_eq!(op.apply(x), reference(&op, x), "x = {x}");
            x += 0.000_37;
        }
        // The slice path is the same arithmetic.
        let mut xs: Vec<f32> = (-500..500).map(|i| i as f32 * 0.0131).collect();
        let want: Vec<f32> = xs.iter().map(|&x| reference(&op, x)).collect();
        op.apply_slice(&mut xs);
        assert_eq!(xs, want);
    }

    /// x → Clip(lo, hi) → QuantizeLinear(6/255, −128, int8) → DequantizeLinear → y, plus a
    /// second reader of the clipped value when `shared`.
    fn clip_model(lo: f32, hi: f32, shared: bool) -> ModelProto {
        use tract_onnx::pb::{GraphProto, OperatorSetIdProto, ValueInfoProto};
        let f = |name: &str, v: f32| TensorProto {
            name: name.into(),
            data_type: DataType::Float as i32,
            raw_data: v.to_le_bytes().to_vec(),
            ..TensorProto::default()
        };
        let zp = TensorProto {
            name: "zp".into(),
            data_type: DataType::Int8 as i32,
            raw_data: vec![(-128i8) as u8],
            ..TensorProto::default()
        };
        let node = |op: &str, input: &[&str], output: &str| NodeProto {
            name: output.into(),
            op_type: op.into(),
            input: input.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            ..NodeProto::default()
        };
        let mut nodes = vec![
            node("Clip", &["x", "lo", "hi"], "c"),
            node("QuantizeLinear", &["c", "s", "zp"], "q"),
            node("DequantizeLinear", &["q", "s", "zp"], "y"),
        ];
        let mut outputs = vec!["y"];
        if shared {
            nodes.push(node("Relu", &["c"], "r"));
            outputs.push("r");
        }
        ModelProto {
            graph: Some(GraphProto {
                node: nodes,
                initializer: vec![f("lo", lo), f("hi", hi), f("s", 6.0 / 255.0), zp],
                input: vec![ValueInfoProto {
                    name: "x".into(),
                    r#type: Some(tract_onnx::pb::TypeProto {
                        value: Some(tract_onnx::pb::type_proto::Value::TensorType(
                            tract_onnx::pb::type_proto::Tensor {
                                elem_type: DataType::Float as i32,
                                shape: None,
                            },
                        )),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                output: outputs
                    .iter()
                    .map(|o| ValueInfoProto {
                        name: o.to_string(),
                        ..Default::default()
                    })
                    .collect(),
                ..GraphProto::default()
            }),
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 13,
            }],
            ..ModelProto::default()
        }
    }

    fn run(model: ModelProto, x: &[f32]) -> Vec<f32> {
        let model = crate::onnx_fold::load_proto(model)
            .unwrap()
            .with_input_fact(0, f32::fact([x.len()]).into())
            .unwrap();
        let plan = crate::onnx_fold::optimize(model)
            .unwrap()
            .into_runnable()
            .unwrap();
        let input = Tensor::from_shape(&[x.len()], x).unwrap();
        let out = plan.run(tvec!(input.into_tvalue())).unwrap();
        out[0].as_slice::<f32>().unwrap().to_vec()
    }

    #[test]
    fn a_relu6_implied_by_the_quantization_range_is_dropped_and_nothing_changes() {
        let mut model = clip_model(0.0, 6.0, false);
        assert_eq!(drop_clips_implied_by_quantize(&mut model), 1);
        let graph = model.graph.as_ref().unwrap();
        assert!(graph.node.iter().all(|n| n.op_type != "Clip"));
        assert_eq!(
            graph.node[0].input[0], "x",
            "the quantization reads the Clip's input"
        );
        // The same numbers as with the Clip, to the bit, across and beyond [0, 6].
        let mut x: Vec<f32> = (-3000..9000).map(|i| i as f32 * 0.001_37).collect();
        x.extend([
            f32::MIN,
            -1e9,
            -0.0,
            6.0,
            6.011_764,
            1e9,
            f32::MAX,
            f32::NAN,
        ]);
        x.extend([f32::INFINITY, f32::NEG_INFINITY]);
        let kept = {
            // load_proto drops it too; so build the reference by hand: clip, then the pair.
            let op = FakeQuantize {
                q_scale: 6.0 / 255.0,
                q_zero_point: -128,
                dq_scale: 6.0 / 255.0,
                dq_zero_point: -128,
                qmin: -128,
                qmax: 127,
            };
            x.iter()
                .map(|&v| reference(&op, if v.is_nan() { 0.0 } else { v.clamp(0.0, 6.0) }))
                .collect::<Vec<f32>>()
        };
        let got = run(model, &x);
        for ((g, k), v) in got.iter().zip(&kept).zip(&x) {
            assert_eq!(g.to_bits(), k.to_bits(), "x = {v}: {g} vs {k}");
        }
    }

    #[test]
    fn a_clip_that_the_quantization_does_not_imply_or_that_others_read_stays() {
        // Clip(0, 3) cuts inside the range [0, 6]; Clip(−1, 6) lets −1 through, which
        // quantizes to −128 as well, so it is implied (a bound beyond saturation is fine).
        let mut narrow = clip_model(0.0, 3.0, false);
        assert_eq!(drop_clips_implied_by_quantize(&mut narrow), 0);
        let mut wide = clip_model(-1.0, 6.0, false);
        assert_eq!(drop_clips_implied_by_quantize(&mut wide), 1);
        let mut lower_inside = clip_model(0.5, 6.0, false);
        assert_eq!(drop_clips_implied_by_quantize(&mut lower_inside), 0);
        let mut shared = clip_model(0.0, 6.0, true);
        assert_eq!(drop_clips_implied_by_quantize(&mut shared), 0);
        // And the narrow one still clips when run.
        let got = run(clip_model(0.0, 3.0, false), &[5.0]);
        assert!((got[0] - 3.0).abs() < 0.02, "{got:?}");
    }

    #[test]
    fn uint8_range_and_different_dequantize_parameters() {
        let op = FakeQuantize {
            q_scale: 0.1,
            q_zero_point: 3,
            dq_scale: 0.2,
            dq_zero_point: 1,
            qmin: 0,
            qmax: 255,
        };
        for x in [-5.0f32, -0.3, 0.0, 0.04, 0.05, 0.06, 7.7, 30.0] {
            assert_eq!(op.apply(x), reference(&op, x), "x = {x}");
        }
        assert_eq!(op.apply(-5.0), -0.2, "saturates at 0, then (0 − 1) · 0.2");
    }
}
