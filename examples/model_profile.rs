//! tract's per-node profile of the embedded YAMNet classifier (issue 8, item 5).
//!
//! Runs the optimised plan on `N` patches (default 50) of a fixed pseudo-random log-mel input
//! and prints, per op type and for the 15 slowest nodes, the mean time per patch in µs and its
//! share. Timings do not depend on the input values. Run:
//! `cargo run --release --example model_profile [-- N]`.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use earshot::classifier::{Classifier, MEL_BANDS, PATCH_FRAMES};
use tract_onnx::prelude::*;

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(50);
    let classifier = Classifier::embedded()?;
    let plan = classifier.plan().clone();
    let patch = common::test_patch();
    let input = Tensor::from_shape(&[PATCH_FRAMES, MEL_BANDS], &patch)?;
    let mut state = SimpleState::new(&plan)?;
    let mut per_node: BTreeMap<usize, Duration> = BTreeMap::new();
    state.run(tvec!(input.clone().into()))?; // warm-up
    let t0 = Instant::now();
    for _ in 0..n {
        state.run_plan_with_eval(tvec!(input.clone().into()), |s, st, node, inputs| {
            let t = Instant::now();
            let r = tract_onnx::tract_core::plan::eval(s, st, node, inputs);
            *per_node.entry(node.id).or_default() += t.elapsed();
            r
        })?;
    }
    let wall = t0.elapsed().as_secs_f64() * 1e6 / n as f64;
    let model = plan.model();
    let total: f64 = per_node.values().map(|d| d.as_secs_f64()).sum::<f64>() * 1e6 / n as f64;
    let mut by_op: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for (&id, d) in &per_node {
        let e = by_op
            .entry(model.node(id).op().name().to_string())
            .or_default();
        e.0 += d.as_secs_f64() * 1e6 / n as f64;
        e.1 += 1;
    }
    println!("{n} patches: {wall:.0} µs per patch wall, {total:.0} µs in nodes");
    println!(
        "\n{:<28} {:>6} {:>10} {:>7}",
        "op", "nodes", "µs/patch", "share"
    );
    let mut ops: Vec<_> = by_op.into_iter().collect();
    ops.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
    for (op, (us, count)) in &ops {
        println!(
            "{op:<28} {count:>6} {us:>10.1} {:>6.1}%",
            100.0 * us / total
        );
    }
    println!("\n15 slowest nodes:");
    let mut nodes: Vec<_> = per_node.iter().collect();
    nodes.sort_by(|a, b| b.1.cmp(a.1));
    for (&id, d) in nodes.iter().take(40) {
        let node = model.node(id);
        let us = d.as_secs_f64() * 1e6 / n as f64;
        println!(
            "{us:>8.1} µs  {} ({}) {:?}",
            node.name,
            node.op().name(),
            node.op().info().unwrap_or_default()
        );
    }
    Ok(())
}
