//! The inference engine: ONNX Runtime through the `ort` crate, loading `libonnxruntime.so` at
//! run time (the one from the `onnxruntime` PyPI wheel; the workload image carries it). The
//! model's input layout (NHWC or NCHW), size and class count are read from the model.

use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::value::Tensor;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "cannot load ONNX Runtime from {path}: {detail} (set ORT_DYLIB_PATH to libonnxruntime.so)"
    )]
    Runtime { path: String, detail: String },
    #[error("the model is not a usable ONNX model: {0}")]
    Model(String),
    #[error(
        "the model's input shape {0:?} is not [batch, H, W, 3] (NHWC) or [batch, 3, H, W] (NCHW)"
    )]
    InputShape(Vec<i64>),
    #[error("inference failed: {0}")]
    Run(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Nhwc,
    Nchw,
}

/// When set, `run` adds the time spent in the model to `MODEL_NANOS` (for the benchmark).
pub static REPORT_TIMING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
pub static MODEL_NANOS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub struct Engine {
    session: Session,
    pub layout: Layout,
    pub height: usize,
    pub width: usize,
}

/// Where libonnxruntime.so is: `ORT_DYLIB_PATH`, else beside this executable, else the
/// system library directories.
fn runtime_library() -> PathBuf {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return PathBuf::from(p);
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("libonnxruntime.so")));
    let candidates = beside.into_iter().chain(
        [
            "/usr/local/lib/libonnxruntime.so",
            "/usr/lib/libonnxruntime.so",
        ]
        .map(PathBuf::from),
    );
    candidates
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("libonnxruntime.so"))
}

/// The ONNX Runtime environment, loaded once per process.
fn runtime() -> Result<&'static ort::environment::Environment, EngineError> {
    static ENV: std::sync::OnceLock<Result<ort::environment::Environment, String>> =
        std::sync::OnceLock::new();
    let path = runtime_library();
    ENV.get_or_init(|| {
        ort::init_from(&path)
            .map_err(|e| e.to_string())?
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|detail| EngineError::Runtime {
        path: path.display().to_string(),
        detail: detail.clone(),
    })
}

impl Engine {
    pub fn load(model: &[u8], threads: usize) -> Result<Self, EngineError> {
        let env = runtime()?;
        let session = Session::builder(env)
            // All graph optimisations (what ONNX Runtime's Python API does by default).
            .and_then(|b| {
                b.with_optimization_level(ort::session::builder::GraphOptimizationLevel::All)
                    .map_err(Into::into)
            })
            .and_then(|b| b.with_intra_threads(threads).map_err(Into::into))
            .and_then(|mut b| b.commit_from_memory(model))
            .map_err(|e| EngineError::Model(e.to_string()))?;
        let input = session
            .inputs()
            .first()
            .ok_or_else(|| EngineError::Model("it has no inputs".into()))?;
        let shape: Vec<i64> = input
            .dtype()
            .tensor_shape()
            .map(|s| s.iter().copied().collect())
            .ok_or_else(|| EngineError::Model("its input is not a tensor".into()))?;
        let (layout, height, width) = match shape.as_slice() {
            [_, h, w, 3] if *h > 0 && *w > 0 => (Layout::Nhwc, *h as usize, *w as usize),
            [_, 3, h, w] if *h > 0 && *w > 0 => (Layout::Nchw, *h as usize, *w as usize),
            _ => return Err(EngineError::InputShape(shape)),
        };
        Ok(Engine {
            session,
            layout,
            height,
            width,
        })
    }

    pub fn from_file(path: &Path, threads: usize) -> Result<Self, EngineError> {
        let bytes = std::fs::read(path)
            .map_err(|e| EngineError::Model(format!("{}: {e}", path.display())))?;
        Self::load(&bytes, threads)
    }

    /// Logits for `n` images given as NHWC float32 pixels; returns `n` rows.
    pub fn run(&mut self, nhwc: Vec<f32>, n: usize) -> Result<Vec<Vec<f32>>, EngineError> {
        let (h, w) = (self.height, self.width);
        let (shape, data) = match self.layout {
            Layout::Nhwc => ([n, h, w, 3], nhwc),
            Layout::Nchw => {
                let mut out = vec![0f32; nhwc.len()];
                for i in 0..n {
                    for y in 0..h {
                        for x in 0..w {
                            for c in 0..3 {
                                out[((i * 3 + c) * h + y) * w + x] =
                                    nhwc[((i * h + y) * w + x) * 3 + c];
                            }
                        }
                    }
                }
                ([n, 3, h, w], out)
            }
        };
        let started = std::time::Instant::now();
        let tensor =
            Tensor::from_array((shape, data)).map_err(|e| EngineError::Run(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs![tensor])
            .map_err(|e| EngineError::Run(e.to_string()))?;
        let (out_shape, logits) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(|e| EngineError::Run(e.to_string()))?;
        let classes = out_shape.last().copied().unwrap_or(0).max(0) as usize;
        if classes == 0 || logits.len() != n * classes {
            return Err(EngineError::Run(format!(
                "unexpected output shape {:?}",
                out_shape.to_vec()
            )));
        }
        let rows = logits.chunks(classes).map(<[f32]>::to_vec).collect();
        if REPORT_TIMING.load(std::sync::atomic::Ordering::Relaxed) {
            MODEL_NANOS.fetch_add(
                started.elapsed().as_nanos() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        Ok(rows)
    }
}
