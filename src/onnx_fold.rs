//! Folds ONNX `DequantizeLinear` nodes whose inputs are all constants into f32 initializers.
//!
//! Why: tract-onnx 0.22 reads only the first value of a `DequantizeLinear` scale and ignores the
//! `axis` attribute (tract-onnx 0.22.5, `src/ops/quant.rs`, `scale.as_slice::<f32>()?[0]`), so
//! a graph with per-channel weight quantization — YAMNet's int8 graph has 54 such nodes — runs
//! with every channel scaled by channel 0's scale and returns meaningless scores. Folding the
//! constant weights ahead of tract computes exactly what the ONNX operator defines
//! (`y = (x − zero_point) · scale`, per axis, in f32, as onnxruntime does) and leaves the
//! per-tensor activation quantization (which tract handles) untouched.

use tract_onnx::pb::{tensor_proto::DataType, ModelProto, NodeProto, TensorProto};
use tract_onnx::prelude::{Framework, InferenceModel, InferenceModelExt, TractResult};

/// Parses an ONNX model for tract with [`fold_constant_dequantize`] and then
/// [`crate::fake_quant::fuse_quantize_dequantize`] applied: the way every model in Earshot
/// (and in its tests) is loaded.
///
/// # Errors
/// tract's parse error, or the fold's message (naming the node) as an error.
pub fn load_onnx(bytes: &[u8]) -> TractResult<InferenceModel> {
    let mut onnx = tract_onnx::onnx();
    crate::fake_quant::register(&mut onnx);
    let mut proto = onnx.proto_model_for_read(&mut &bytes[..])?;
    fold_constant_dequantize(&mut proto).map_err(tract_onnx::prelude::TractError::msg)?;
    crate::fake_quant::fuse_quantize_dequantize(&mut proto);
    onnx.model_for_proto_model(&proto)
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
    let len: usize = x.dims.iter().map(|&d| d.max(0) as usize).product();
    if xs.len() != len {
        return Err(err(format!(
            "data has {} values, dims {:?} need {len}",
            xs.len(),
            x.dims
        )));
    }
    // Per-tensor (one scale) or per-axis (one scale per index along `axis`, default 1).
    let (stride, channels) = if scales.len() <= 1 {
        (1, 1)
    } else {
        let rank = x.dims.len() as i64;
        let axis = node
            .attribute
            .iter()
            .find(|a| a.name == "axis")
            .map_or(1, |a| a.i);
        let axis = if axis < 0 { axis + rank } else { axis };
        if !(0..rank).contains(&axis) {
            return Err(err(format!("axis {axis} outside rank {rank}")));
        }
        let axis = axis as usize;
        let channels = x.dims[axis].max(0) as usize;
        if scales.len() != channels || (zps.len() != 1 && zps.len() != channels) {
            return Err(err(format!(
                "{} scales and {} zero points for {channels} channels on axis {axis}",
                scales.len(),
                zps.len()
            )));
        }
        let stride: usize = x.dims[axis + 1..]
            .iter()
            .map(|&d| d.max(0) as usize)
            .product();
        (stride, channels)
    };
    if scales.is_empty() {
        return Err(err("empty scale".into()));
    }
    let values: Vec<f32> = xs
        .iter()
        .enumerate()
        .map(|(i, &q)| {
            let c = (i / stride) % channels;
            let zp = zps.get(c).or(zps.first()).copied().unwrap_or(0);
            (q - zp) as f32 * scales[c]
        })
        .collect();
    Ok(TensorProto {
        name: node.output.first().cloned().unwrap_or_default(),
        dims: x.dims.clone(),
        data_type: DataType::Float as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..TensorProto::default()
    })
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
        // 2 output channels × 3 values, int8, axis 0: channel scales 0.5 and 2.0, zero points 1, -1.
        let x = tensor(
            "w",
            &[2, 3],
            DataType::Int8,
            [3i8, 5, -1, 0, 2, 4].map(|v| v as u8).to_vec(),
        );
        let s = tensor(
            "s",
            &[2],
            DataType::Float,
            [0.5f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect(),
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
        let mut model = ModelProto {
            graph: Some(GraphProto {
                node: vec![node, user],
                initializer: vec![x, s, z],
                ..GraphProto::default()
            }),
            ..ModelProto::default()
        };
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
