//! Folds ONNX `DequantizeLinear` nodes whose inputs are all constants into f32 initializers.
//!
//! Why: tract-onnx 0.22 reads only the first value of a `DequantizeLinear` scale and ignores the
//! `axis` attribute (tract-onnx 0.22.5, `src/ops/quant.rs`, `scale.as_slice::<f32>()?[0]`), so
//! a graph with per-channel weight quantization — YAMNet's int8 graph has 54 such nodes — runs
//! with every channel scaled by channel 0's scale and returns meaningless scores. Folding the
//! constant weights ahead of tract computes exactly what the ONNX operator defines
//! (`y = (x − zero_point) · scale`, per axis, in f32, as onnxruntime does) and leaves the
//! per-tensor activation quantization (which tract handles) untouched.

//!
//! Two ways to apply it, with the same arithmetic ([`dequantize_values`]):
//! * [`load_onnx`] (how Earshot loads every model) renames each such node to
//!   [`CONST_DEQUANTIZE_OP`]; tract loads the int8 data as it is and the node becomes an f32
//!   constant when the model is typed ([`ConstDequantize`]). The f32 weights (15 MB for
//!   YAMNet) then exist once during the load, not twice (in the ONNX proto and in tract's copy:
//!   a 31 MB heap peak, `valgrind --tool=massif`).
//! * [`fold_constant_dequantize`] folds them in the proto (the tests and examples that compare
//!   graphs).

use tract_onnx::pb::{tensor_proto::DataType, ModelProto, NodeProto, TensorProto};
use tract_onnx::prelude::{Framework, InferenceModel, InferenceModelExt, TractResult};
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::expandable::expand;

/// The op type [`load_onnx`] gives a `DequantizeLinear` node whose data, scale and zero point
/// are all initializers (not a standard op; only Earshot's parser knows it).
pub const CONST_DEQUANTIZE_OP: &str = "EarshotConstDequantize";

/// Parses an ONNX model for tract with [`mark_constant_dequantize`],
/// [`crate::fake_quant::drop_clips_implied_by_quantize`] and
/// [`crate::fake_quant::fuse_quantize_dequantize`] applied: the way every model in Earshot
/// (and in its tests) is loaded. The constant `DequantizeLinear` nodes are computed (per axis,
/// as [`fold_constant_dequantize`] does) when the model is typed (`into_typed`, in
/// [`optimize`]).
///
/// # Errors
/// tract's parse error. A malformed constant `DequantizeLinear` (its message names the node)
/// fails when the model is typed.
pub fn load_onnx(bytes: &[u8]) -> TractResult<InferenceModel> {
    let proto = framework().proto_model_for_read(&mut &bytes[..])?;
    load_proto(proto)
}

/// [`load_onnx`] on a decoded model.
///
/// # Errors
/// As [`load_onnx`], and a graph input (other than an initializer) without a tensor type, which
/// tract-onnx 0.22.5 would panic on (`model.rs`, `input.r#type.unwrap()`).
pub fn load_proto(mut proto: ModelProto) -> TractResult<InferenceModel> {
    if let Some(graph) = &proto.graph {
        for input in &graph.input {
            let typed = matches!(
                input.r#type.as_ref().and_then(|t| t.value.as_ref()),
                Some(tract_onnx::pb::type_proto::Value::TensorType(_))
            );
            if !typed && !graph.initializer.iter().any(|t| t.name == input.name) {
                bail!(
                    "graph input '{}' has no tensor type (ONNX ValueInfoProto.type must be a tensor type)",
                    input.name
                );
            }
        }
    }
    mark_constant_dequantize(&mut proto);
    crate::fake_quant::drop_clips_implied_by_quantize(&mut proto);
    crate::fake_quant::fuse_quantize_dequantize(&mut proto);
    framework().model_for_proto_model(&proto)
}

/// tract's ONNX parser with Earshot's two ops registered.
fn framework() -> tract_onnx::Onnx {
    let mut onnx = tract_onnx::onnx();
    crate::fake_quant::register(&mut onnx);
    onnx.op_register
        .insert(CONST_DEQUANTIZE_OP, parse_const_dequantize);
    onnx
}

/// Renames every `DequantizeLinear` node whose data, scale and zero point (if given) are
/// initializers to [`CONST_DEQUANTIZE_OP`], inputs and attributes unchanged. Returns how many.
pub fn mark_constant_dequantize(model: &mut ModelProto) -> usize {
    let Some(graph) = model.graph.as_mut() else {
        return 0;
    };
    let initializers: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut count = 0;
    for node in &mut graph.node {
        let constant = |i: usize| {
            node.input
                .get(i)
                .is_some_and(|n| initializers.contains(n.as_str()))
        };
        let zero_point_ok = node.input.len() <= 2 || node.input[2].is_empty() || constant(2);
        if node.op_type == "DequantizeLinear" && constant(0) && constant(1) && zero_point_ok {
            node.op_type = CONST_DEQUANTIZE_OP.into();
            count += 1;
        }
    }
    count
}

fn parse_const_dequantize(
    _ctx: &tract_onnx::model::ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let axis = node
        .attribute
        .iter()
        .find(|a| a.name == "axis")
        .map(|a| a.i);
    Ok((
        expand(ConstDequantize {
            node: node.name.clone(),
            axis,
        }),
        vec![],
    ))
}

/// A `DequantizeLinear` node of constant inputs (ONNX `DequantizeLinear`-13:
/// `y = (x − zero_point) · scale`, per tensor or per `axis`, default 1): its output, f32 with
/// the data's shape, becomes a constant of the typed model; its int8 inputs are then unused and
/// dropped by tract's declutter.
#[derive(Debug, Clone, Hash)]
pub struct ConstDequantize {
    /// The ONNX node's name (for error messages).
    pub node: String,
    /// The node's `axis` attribute, if it has one.
    pub axis: Option<i64>,
}

impl Expansion for ConstDequantize {
    fn name(&self) -> StaticName {
        "ConstDequantize".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        if !(2..=3).contains(&inputs.len()) {
            bail!(
                "DequantizeLinear node '{}': {} inputs, expected 2 or 3",
                self.node,
                inputs.len()
            );
        }
        check_output_arity(outputs, 1)?;
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
        s.equals(&outputs[0].shape, &inputs[0].shape)?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        target: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let err = |what: String| format_err!("DequantizeLinear node '{}': {what}", self.node);
        let konst = |i: usize| -> TractResult<Arc<Tensor>> {
            target
                .outlet_fact(inputs[i])?
                .konst
                .clone()
                .ok_or_else(|| err(format!("input {i} is not a constant")))
        };
        let x = konst(0)?;
        let scale = konst(1)?;
        if scale.datum_type() != DatumType::F32 {
            return Err(err(format!(
                "scale is {:?}, expected f32",
                scale.datum_type()
            )));
        }
        let zero_points: Vec<i32> = match inputs.get(2) {
            Some(_) => {
                let zp = konst(2)?;
                match zp.datum_type() {
                    DatumType::I8 | DatumType::U8 | DatumType::I32 => {
                        zp.cast_to::<i32>()?.as_slice::<i32>()?.to_vec()
                    }
                    other => {
                        return Err(err(format!(
                            "zero point is {other:?}, expected int8, uint8 or int32"
                        )))
                    }
                }
            }
            None => vec![0],
        };
        let dims: Vec<i64> = x.shape().iter().map(|&d| d as i64).collect();
        let scales = scale.as_slice::<f32>()?;
        // Straight from the data's own element type into the tensor's buffer: no widened or
        // second copy of the weights.
        let mut tensor = Tensor::zero::<f32>(x.shape())?;
        let out = tensor.as_slice_mut::<f32>()?;
        let (node, axis, zps) = (&self.node, self.axis, &zero_points);
        match x.datum_type() {
            DatumType::I8 => {
                dequantize_into(node, axis, &dims, x.as_slice::<i8>()?, scales, zps, out)
            }
            DatumType::U8 => {
                dequantize_into(node, axis, &dims, x.as_slice::<u8>()?, scales, zps, out)
            }
            DatumType::I32 => {
                dequantize_into(node, axis, &dims, x.as_slice::<i32>()?, scales, zps, out)
            }
            other => {
                return Err(err(format!(
                    "data is {other:?}, expected int8, uint8 or int32"
                )))
            }
        }
        .map_err(TractError::msg)?;
        Ok(tvec![target.add_const(prefix, tensor)?])
    }
}

/// Types, declutters and optimizes a model loaded with [`load_onnx`] the way Earshot runs it:
/// with [`crate::depthwise::replace_depthwise`] between tract's declutter and codegen passes.
/// Set the input facts before calling it.
///
/// # Errors
/// tract's error from typing, decluttering, the depthwise swap or optimization.
pub fn optimize(model: InferenceModel) -> TractResult<tract_onnx::prelude::TypedModel> {
    let mut model = model.into_typed()?.into_decluttered()?;
    crate::depthwise::replace_depthwise(&mut model)?;
    model.into_optimized()
}

/// Replaces every `DequantizeLinear` node whose data, scale and zero point are initializers by
/// an f32 initializer holding its output; drops initializers no node uses any more.
/// Returns how many nodes were folded.
///
/// # Errors
/// A message naming the node and what is malformed (unsupported element type, scale length not
/// matching the axis, data shorter than its dims).
pub fn fold_constant_dequantize(model: &mut ModelProto) -> Result<usize, String> {
    let Some(graph) = model.graph.as_mut() else {
        return Ok(0);
    };
    let mut folded = Vec::new();
    let mut keep = Vec::with_capacity(graph.node.len());
    for node in graph.node.drain(..) {
        if node.op_type != "DequantizeLinear" {
            keep.push(node);
            continue;
        }
        let find = |i: usize| {
            node.input
                .get(i)
                .filter(|n| !n.is_empty())
                .and_then(|n| graph.initializer.iter().find(|t| &t.name == n))
        };
        let (Some(x), Some(scale)) = (find(0), find(1)) else {
            keep.push(node);
            continue;
        };
        if node.input.len() > 2 && !node.input[2].is_empty() && find(2).is_none() {
            keep.push(node);
            continue;
        }
        let out = dequantize(&node, x, scale, find(2))?;
        folded.push(out);
    }
    graph.node = keep;
    let count = folded.len();
    graph.initializer.extend(folded);
    // Initializers that only fed the folded nodes are dead now.
    let used: std::collections::HashSet<&str> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .chain(graph.output.iter().map(|o| o.name.as_str()))
        .collect();
    let used: std::collections::HashSet<String> = used.into_iter().map(str::to_owned).collect();
    graph.initializer.retain(|t| used.contains(&t.name));
    Ok(count)
}

fn dequantize(
    node: &NodeProto,
    x: &TensorProto,
    scale: &TensorProto,
    zero_point: Option<&TensorProto>,
) -> Result<TensorProto, String> {
    let err = |what: String| format!("DequantizeLinear node '{}': {what}", node.name);
    let xs = ints(x).map_err(&err)?;
    let zps = zero_point
        .map(ints)
        .transpose()
        .map_err(&err)?
        .unwrap_or_else(|| vec![0]);
    let scales = floats(scale).map_err(&err)?;
    let axis = node
        .attribute
        .iter()
        .find(|a| a.name == "axis")
        .map(|a| a.i);
    let values = dequantize_values(&node.name, axis, &x.dims, &xs, &scales, &zps)?;
    Ok(TensorProto {
        name: node.output.first().cloned().unwrap_or_default(),
        dims: x.dims.clone(),
        data_type: DataType::Float as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..TensorProto::default()
    })
}

/// ONNX `DequantizeLinear`-13 on constant data: `y = (x − zero_point) · scale`, with one scale
/// (per tensor) or one per index along `axis` (default 1, negative counts from the end); one
/// zero point, or one per channel. `dims` is the data's shape, `xs` its values in row-major
/// order.
///
/// # Errors
/// A message naming `node`: data length not matching `dims`, an axis outside the rank, scale or
/// zero-point counts matching neither one nor the channel count, no scale.
pub fn dequantize_values<T: Copy + Into<i32>>(
    node: &str,
    axis: Option<i64>,
    dims: &[i64],
    xs: &[T],
    scales: &[f32],
    zps: &[i32],
) -> Result<Vec<f32>, String> {
    let mut out = vec![0.0; xs.len()];
    dequantize_into(node, axis, dims, xs, scales, zps, &mut out)?;
    Ok(out)
}

/// [`dequantize_values`] into `out` (as long as `xs`), so that a caller can write straight into
/// a tensor's buffer.
///
/// # Errors
/// As [`dequantize_values`]; also when `out` and `xs` differ in length.
pub fn dequantize_into<T: Copy + Into<i32>>(
    node: &str,
    axis: Option<i64>,
    dims: &[i64],
    xs: &[T],
    scales: &[f32],
    zps: &[i32],
    out: &mut [f32],
) -> Result<(), String> {
    let err = |what: String| format!("DequantizeLinear node '{node}': {what}");
    let len: usize = dims.iter().map(|&d| d.max(0) as usize).product();
    if xs.len() != len {
        return Err(err(format!(
            "data has {} values, dims {:?} need {len}",
            xs.len(),
            dims
        )));
    }
    // Per-tensor (one scale) or per-axis (one scale per index along `axis`, default 1).
    let (stride, channels) = if scales.len() <= 1 {
        (1, 1)
    } else {
        let rank = dims.len() as i64;
        let axis = axis.unwrap_or(1);
        let axis = if axis < 0 { axis + rank } else { axis };
        if !(0..rank).contains(&axis) {
            return Err(err(format!("axis {axis} outside rank {rank}")));
        }
        let axis = axis as usize;
        let channels = dims[axis].max(0) as usize;
        if scales.len() != channels || (zps.len() != 1 && zps.len() != channels) {
            return Err(err(format!(
                "{} scales and {} zero points for {channels} channels on axis {axis}",
                scales.len(),
                zps.len()
            )));
        }
        let stride: usize = dims[axis + 1..]
            .iter()
            .map(|&d| d.max(0) as usize)
            .product();
        (stride, channels)
    };
    if scales.is_empty() {
        return Err(err("empty scale".into()));
    }
    if out.len() != xs.len() {
        return Err(err(format!(
            "{} output values for {} data values",
            out.len(),
            xs.len()
        )));
    }
    for (i, (y, &q)) in out.iter_mut().zip(xs).enumerate() {
        let c = (i / stride) % channels;
        let zp = zps.get(c).or(zps.first()).copied().unwrap_or(0);
        *y = (q.into() - zp) as f32 * scales[c];
    }
    Ok(())
}

/// Integer tensor contents (int8, uint8, int32), from `raw_data` or `int32_data`.
pub(crate) fn ints(t: &TensorProto) -> Result<Vec<i32>, String> {
    let raw = &t.raw_data;
    const INT8: i32 = DataType::Int8 as i32;
    const UINT8: i32 = DataType::Uint8 as i32;
    const INT32: i32 = DataType::Int32 as i32;
    match t.data_type {
        INT8 if !raw.is_empty() => Ok(raw.iter().map(|&b| b as i8 as i32).collect()),
        UINT8 if !raw.is_empty() => Ok(raw.iter().map(|&b| b as i32).collect()),
        INT32 if !raw.is_empty() => {
            if raw.len() % 4 != 0 {
                return Err(format!(
                    "tensor '{}': raw data not a multiple of 4 bytes",
                    t.name
                ));
            }
            Ok(raw
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect())
        }
        INT8 | UINT8 | INT32 => Ok(t.int32_data.clone()),
        _ => Err(format!(
            "tensor '{}': element type {} is not int8, uint8 or int32",
            t.name, t.data_type
        )),
    }
}

/// f32 tensor contents, from `raw_data` or `float_data`.
pub(crate) fn floats(t: &TensorProto) -> Result<Vec<f32>, String> {
    if t.data_type != DataType::Float as i32 {
        return Err(format!("scale '{}' is not f32", t.name));
    }
    if t.raw_data.is_empty() {
        return Ok(t.float_data.clone());
    }
    if t.raw_data.len() % 4 != 0 {
        return Err(format!(
            "tensor '{}': raw data not a multiple of 4 bytes",
            t.name
        ));
    }
    Ok(t.raw_data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::{AttributeProto, GraphProto};

    fn tensor(name: &str, dims: &[i64], dt: DataType, raw: Vec<u8>) -> TensorProto {
        TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: dt as i32,
            raw_data: raw,
            ..TensorProto::default()
        }
    }

    #[test]
    fn per_axis_weights_use_their_own_channel_scale() {
        let mut model = per_axis_model(&[0.5, 2.0]);
        assert_eq!(fold_constant_dequantize(&mut model).unwrap(), 1);
        let g = model.graph.unwrap();
        assert_eq!(g.node.len(), 1);
        assert_eq!(
            g.initializer.len(),
            1,
            "inputs of the folded node are dropped"
        );
        let got = floats(&g.initializer[0]).unwrap();
        assert_eq!(got, vec![1.0, 2.0, -1.0, 2.0, 6.0, 10.0]);
    }

    #[test]
    fn an_untyped_graph_input_is_an_error_naming_it_not_a_panic() {
        let model = ModelProto {
            graph: Some(GraphProto {
                input: vec![tract_onnx::pb::ValueInfoProto {
                    name: "log_mel".into(),
                    ..Default::default()
                }],
                ..GraphProto::default()
            }),
            ..ModelProto::default()
        };
        let e = load_proto(model).unwrap_err().to_string();
        assert!(
            e.contains("'log_mel'") && e.contains("no tensor type"),
            "{e}"
        );
    }

    /// 2 output channels × 3 values, int8, axis 0: channel scales `scales` (two for a valid
    /// model), zero points 1 and −1; a Relu reads the result, `y` is the graph's output.
    fn per_axis_model(scales: &[f32]) -> ModelProto {
        let x = tensor(
            "w",
            &[2, 3],
            DataType::Int8,
            [3i8, 5, -1, 0, 2, 4].map(|v| v as u8).to_vec(),
        );
        let s = tensor(
            "s",
            &[scales.len() as i64],
            DataType::Float,
            scales.iter().flat_map(|v| v.to_le_bytes()).collect(),
        );
        let z = tensor("z", &[2], DataType::Int8, vec![1u8, (-1i8) as u8]);
        let node = NodeProto {
            name: "dq".into(),
            op_type: "DequantizeLinear".into(),
            input: vec!["w".into(), "s".into(), "z".into()],
            output: vec!["wf".into()],
            attribute: vec![AttributeProto {
                name: "axis".into(),
                i: 0,
                ..AttributeProto::default()
            }],
            ..NodeProto::default()
        };
        let user = NodeProto {
            op_type: "Relu".into(),
            input: vec!["wf".into()],
            output: vec!["y".into()],
            ..NodeProto::default()
        };
        ModelProto {
            graph: Some(GraphProto {
                node: vec![node, user],
                initializer: vec![x, s, z],
                output: vec![tract_onnx::pb::ValueInfoProto {
                    name: "y".into(),
                    ..Default::default()
                }],
                ..GraphProto::default()
            }),
            opset_import: vec![tract_onnx::pb::OperatorSetIdProto {
                domain: String::new(),
                version: 13,
            }],
            ..ModelProto::default()
        }
    }

    #[test]
    fn load_computes_constant_dequantize_per_axis_as_a_constant() {
        let model = load_proto(per_axis_model(&[0.5, 2.0])).unwrap();
        let typed = optimize(model).unwrap();
        // Relu of (x − zp) · scale per row; nothing of the int8 data is left in the graph.
        assert!(
            typed
                .nodes()
                .iter()
                .all(|n| { n.outputs.iter().all(|o| o.fact.datum_type != DatumType::I8) }),
            "{typed:#?}"
        );
        let out = typed.into_runnable().unwrap().run(tvec![]).unwrap();
        let y = out[0].as_slice::<f32>().unwrap();
        assert_eq!(y, &[1.0, 2.0, 0.0, 2.0, 6.0, 10.0]);
    }

    #[test]
    fn load_of_a_malformed_constant_dequantize_names_the_node() {
        let model = load_proto(per_axis_model(&[0.5, 2.0, 1.0, 1.0])).unwrap();
        let e = format!("{:#}", optimize(model).unwrap_err());
        assert!(e.contains("'dq'") && e.contains("4 scales"), "{e}");
    }

    #[test]
    fn malformed_scale_is_an_error_naming_the_node() {
        let x = tensor("w", &[2, 3], DataType::Int8, vec![0; 6]);
        // Default axis 1 has 3 channels; 4 scales fit none.
        let s = tensor("s", &[4], DataType::Float, vec![0; 16]);
        let node = NodeProto {
            name: "bad".into(),
            op_type: "DequantizeLinear".into(),
            input: vec!["w".into(), "s".into()],
            output: vec!["wf".into()],
            ..NodeProto::default()
        };
        let mut model = ModelProto {
            graph: Some(GraphProto {
                node: vec![node],
                initializer: vec![x, s],
                ..GraphProto::default()
            }),
            ..ModelProto::default()
        };
        let e = fold_constant_dequantize(&mut model).unwrap_err();
        assert!(e.contains("'bad'") && e.contains("4 scales"), "{e}");
    }
}
