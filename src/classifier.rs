//! The YAMNet classifier run with tract: one `[96, 64]` log-mel patch in, AudioSet scores out.
//!
//! The model is `yamnet_logmel.onnx` (YAMNet without its front end; see `models/README.md`),
//! embedded in the binary at build time after its SHA-256 was checked, or loaded from a path
//! given with `--model`. Its input and output shapes are checked when it is loaded.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tract_onnx::prelude::*;

/// Number of AudioSet classes YAMNet scores.
pub const NUM_CLASSES: usize = 521;
/// Length of YAMNet's embedding (the pooled features feeding its last layer).
pub const EMBEDDING_LEN: usize = 1024;
/// Frames per input patch.
pub const PATCH_FRAMES: usize = 96;
/// Mel bands per frame.
pub const MEL_BANDS: usize = 64;

/// The ONNX model embedded at build time (`yamnet_logmel.onnx`, SHA-256 in `models/SHA256SUMS`).
pub static EMBEDDED_MODEL: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/yamnet_logmel.onnx"));

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClassifierError {
    /// The model file could not be read.
    #[error("cannot read model {path}: {source}")]
    Read {
        /// The model path given.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The model is not a usable ONNX graph (parse, type or optimisation failure).
    #[error("model {model}: {reason}")]
    Invalid {
        /// Where the model came from ("embedded YAMNet" or a path).
        model: String,
        /// What tract reported, with its context chain.
        reason: String,
    },
    /// An input or output has another shape than the YAMNet log-mel model's.
    #[error("model {model}: {what} has shape {actual}, expected {expected}")]
    Shape {
        /// Where the model came from.
        model: String,
        /// Which tensor ("input 0", "output 'scores'").
        what: String,
        /// The shape found.
        actual: String,
        /// The shape required.
        expected: String,
    },
    /// Inference failed on a patch.
    #[error("inference failed: {0}")]
    Run(String),
}

/// What the classifier says about one patch.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifierOutput {
    /// Per-class sigmoid scores in [0, 1], [`NUM_CLASSES`] values, AudioSet order.
    pub scores: Vec<f32>,
    /// The logits before the sigmoid, [`NUM_CLASSES`] values.
    pub logits: Vec<f32>,
    /// YAMNet's embedding, [`EMBEDDING_LEN`] values.
    pub embedding: Vec<f32>,
}

type Plan = TypedRunnableModel<TypedModel>;

/// A loaded, optimised YAMNet log-mel classifier, ready to run patch after patch.
pub struct Classifier {
    plan: Arc<Plan>,
    state: TypedSimpleState<TypedModel, Arc<Plan>>,
    /// Output slots of scores, logits and embedding.
    outputs: [usize; 3],
    source: String,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Classifier {
    /// Loads the model embedded in the binary.
    ///
    /// # Errors
    /// [`ClassifierError::Invalid`] if tract cannot prepare it (it was verified at build time, so
    /// this points at a tract problem, not at the file).
    pub fn embedded() -> Result<Self, ClassifierError> {
        Self::from_bytes(
            EMBEDDED_MODEL,
            "embedded YAMNet (yamnet_logmel.onnx)".into(),
            true,
        )
    }

    /// Loads an ONNX model from `path` (`--model`). It must have YAMNet's log-mel interface:
    /// input f32 `[96, 64]`; outputs `scores` and `logits` `[1, 521]`, `embedding` `[1, 1024]`.
    ///
    /// # Errors
    /// [`ClassifierError::Read`], [`ClassifierError::Invalid`] or [`ClassifierError::Shape`],
    /// each naming the path.
    pub fn from_path(path: &Path) -> Result<Self, ClassifierError> {
        let bytes = std::fs::read(path).map_err(|source| ClassifierError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_bytes(&bytes, path.display().to_string(), false)
    }

    /// `page_out`: once parsed, `bytes` are not read again; page them out (the embedded model,
    /// 4 MB of the binary: [`earshot_sdk::memory::page_out`]) so that they are not resident
    /// while the weights are expanded to f32, the load's memory peak.
    fn from_bytes(bytes: &[u8], source: String, page_out: bool) -> Result<Self, ClassifierError> {
        let invalid = |e: TractError| ClassifierError::Invalid {
            model: source.clone(),
            reason: format!("{e:#}"),
        };
        let shape_err = |what: String, actual: String, expected: &str| ClassifierError::Shape {
            model: source.clone(),
            what,
            actual,
            expected: expected.into(),
        };
        let model = crate::onnx_fold::load_onnx(bytes).map_err(invalid)?;
        if page_out {
            match earshot_sdk::memory::page_out(bytes) {
                Ok(n) => tracing::debug!(bytes = n, "model bytes paged out after parsing"),
                Err(e) => tracing::debug!(error = %e, "model bytes stay resident"),
            }
        }
        if model.inputs.len() != 1 {
            return Err(shape_err(
                "inputs".into(),
                format!("{} inputs", model.inputs.len()),
                "1 input",
            ));
        }
        let declared = model.input_fact(0).map_err(invalid)?;
        if let Some(shape) = declared.shape.as_concrete_finite().map_err(invalid)? {
            if shape.as_slice() != [PATCH_FRAMES, MEL_BANDS] {
                return Err(shape_err(
                    "input 0".into(),
                    format!("{:?}", shape.as_slice()),
                    "[96, 64]",
                ));
            }
        }
        // Outputs by name, in the order scores, logits, embedding.
        let names: Vec<String> = model
            .output_outlets()
            .map_err(invalid)?
            .iter()
            .map(|o| {
                model
                    .outlet_label(*o)
                    .map(str::to_owned)
                    .unwrap_or_else(|| model.node(o.node).name.clone())
            })
            .collect();
        let slot = |name: &str| {
            names.iter().position(|n| n == name).ok_or_else(|| {
                shape_err(
                    format!("output '{name}'"),
                    format!("missing (outputs: {})", names.join(", ")),
                    "present",
                )
            })
        };
        let outputs = [slot("scores")?, slot("logits")?, slot("embedding")?];
        let model = model
            .with_input_fact(0, f32::fact([PATCH_FRAMES, MEL_BANDS]).into())
            .and_then(crate::onnx_fold::optimize)
            .map_err(invalid)?;
        for (slot, (name, len)) in outputs.iter().zip([
            ("scores", NUM_CLASSES),
            ("logits", NUM_CLASSES),
            ("embedding", EMBEDDING_LEN),
        ]) {
            let fact = model.output_fact(*slot).map_err(invalid)?;
            let ok = fact.datum_type == f32::datum_type()
                && fact.shape.as_concrete().is_some_and(|s| s == [1, len]);
            if !ok {
                return Err(shape_err(
                    format!("output '{name}'"),
                    format!("{fact:?}"),
                    &format!("f32 [1, {len}]"),
                ));
            }
        }
        let plan = Arc::new(model.into_runnable().map_err(invalid)?);
        let state = SimpleState::new(plan.clone()).map_err(invalid)?;
        Ok(Self {
            plan,
            state,
            outputs,
            source,
        })
    }

    /// Where the model came from: "embedded YAMNet (…)" or the path given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Runs the model on one patch: `log_mel` is `[96, 64]` frame-major (`96 · 64` values).
    ///
    /// # Errors
    /// [`ClassifierError::Run`] if the slice has the wrong length or tract fails.
    pub fn classify(&mut self, log_mel: &[f32]) -> Result<ClassifierOutput, ClassifierError> {
        let input = Tensor::from_shape(&[PATCH_FRAMES, MEL_BANDS], log_mel)
            .map_err(|e| ClassifierError::Run(format!("{e:#}")))?;
        let result = self
            .state
            .run(tvec!(input.into()))
            .map_err(|e| ClassifierError::Run(format!("{e:#}")))?;
        let take = |slot: usize| -> Result<Vec<f32>, ClassifierError> {
            result[slot]
                .as_slice::<f32>()
                .map(<[f32]>::to_vec)
                .map_err(|e| ClassifierError::Run(format!("{e:#}")))
        };
        Ok(ClassifierOutput {
            scores: take(self.outputs[0])?,
            logits: take(self.outputs[1])?,
            embedding: take(self.outputs[2])?,
        })
    }

    /// The optimised plan, for profiling.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }
}
