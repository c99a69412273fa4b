//! Time per patch of Earshot's classifier against the same graph run by tract alone (its own
//! Q/DQ pairs and depthwise convolution), alternating in one process so both see the same
//! machine load. Run: `cargo run --release --example model_speed [-- ROUNDS]` (default 5
//! rounds of 200 patches each).

mod common;

use std::time::Instant;

use earshot::classifier::{Classifier, EMBEDDED_MODEL, MEL_BANDS, PATCH_FRAMES};
use tract_onnx::prelude::*;

fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(5);
    let onnx = tract_onnx::onnx();
    let mut proto = onnx.proto_model_for_read(&mut &EMBEDDED_MODEL[..])?;
    earshot::onnx_fold::fold_constant_dequantize(&mut proto).map_err(anyhow::Error::msg)?;
    let tract_only = onnx
        .model_for_proto_model(&proto)?
        .with_input_fact(0, f32::fact([PATCH_FRAMES, MEL_BANDS]).into())?
        .into_optimized()?
        .into_runnable()?;
    let mut earshot = Classifier::embedded()?;
    let patch = common::test_patch();
    let input = Tensor::from_shape(&[PATCH_FRAMES, MEL_BANDS], &patch)?;
    let mut state = SimpleState::new(&tract_only)?;
    let n = 200;
    let (mut t_tract, mut t_earshot) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..n {
            state.run(tvec!(input.clone().into()))?;
        }
        t_tract.push(t.elapsed().as_secs_f64() * 1e3 / n as f64);
        let t = Instant::now();
        for _ in 0..n {
            earshot.classify(&patch)?;
        }
        t_earshot.push(t.elapsed().as_secs_f64() * 1e3 / n as f64);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (a, b) = (median(&mut t_tract), median(&mut t_earshot));
    println!(
        "ms per patch, median of {rounds} rounds of {n}: tract alone {a:.2}, Earshot {b:.2} ({:.2}×)",
        a / b
    );
    Ok(())
}
