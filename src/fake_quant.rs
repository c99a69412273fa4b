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
    let init = |name: &str| graph.initializer.iter().find(|t| t.name == name);
    // (scale, zero point, qmin, qmax) of a Q or DQ node's constant scalar parameters.
    let params = |node: &NodeProto| -> Option<(f32, i32, i32, i32)> {
        let scale = init(node.input.get(1)?)?;
        let scale = match crate::onnx_fold::floats(scale).ok()?.as_slice() {
            [s] if s.is_finite() && *s > 0.0 => *s,
            _ => return None,
        };
        let (zp, qmin, qmax) = match node.input.get(2).filter(|n| !n.is_empty()) {
            None => (0, 0, 255), // ONNX: no zero point means uint8, zero point 0.
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
    };
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
