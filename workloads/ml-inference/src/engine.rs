//! The inference engine: ONNX Runtime through the `ort` crate, loading `libonnxruntime.so` at
//! run time (the one from the `onnxruntime` PyPI wheel; the workload image carries it). The
//! model's input layout (NHWC or NCHW), size and class count are read from the model.

use std::path::PathBuf;

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

/// Which engine runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineKind {
    /// ONNX Runtime (the default: measured ~3× faster than tract here).
    Ort,
    /// tract, the pure-Rust fallback (build with `--features tract`).
    Tract,
}

enum Backend {
    Ort(Session),
    #[cfg(feature = "tract")]
    Tract(crate::tract_engine::TractModel),
}

pub struct Engine {
    backend: Backend,
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

fn layout_of(shape: Vec<i64>) -> Result<(Layout, usize, usize), EngineError> {
    match shape.as_slice() {
        [_, h, w, 3] if *h > 0 && *w > 0 => Ok((Layout::Nhwc, *h as usize, *w as usize)),
        [_, 3, h, w] if *h > 0 && *w > 0 => Ok((Layout::Nchw, *h as usize, *w as usize)),
        _ => Err(EngineError::InputShape(shape)),
    }
}

impl Engine {
    pub fn load_with(kind: EngineKind, model: &[u8], threads: usize) -> Result<Self, EngineError> {
        match kind {
            EngineKind::Ort => Self::load(model, threads),
            #[cfg(feature = "tract")]
            EngineKind::Tract => {
                let (m, shape) =
                    crate::tract_engine::TractModel::load(model).map_err(EngineError::Model)?;
                let (layout, height, width) = layout_of(shape)?;
                Ok(Engine {
                    backend: Backend::Tract(m),
                    layout,
                    height,
                    width,
                })
            }
            #[cfg(not(feature = "tract"))]
            EngineKind::Tract => Err(EngineError::Model(
                "this build has no tract engine: rebuild with `--features tract`".into(),
            )),
        }
    }

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
        let (layout, height, width) = layout_of(shape)?;
        Ok(Engine {
            backend: Backend::Ort(session),
            layout,
            height,
            width,
        })
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
        let (classes, logits) = match &mut self.backend {
            Backend::Ort(session) => {
                let tensor = Tensor::from_array((shape, data))
                    .map_err(|e| EngineError::Run(e.to_string()))?;
                let outputs = session
                    .run(ort::inputs![tensor])
                    .map_err(|e| EngineError::Run(e.to_string()))?;
                let (out_shape, logits) = outputs[0]
                    .try_extract_tensor::<f32>()
                    .map_err(|e| EngineError::Run(e.to_string()))?;
                (
                    out_shape.last().copied().unwrap_or(0).max(0) as usize,
                    logits.to_vec(),
                )
            }
            #[cfg(feature = "tract")]
            Backend::Tract(m) => m.run(shape, data).map_err(EngineError::Run)?,
        };
        if classes == 0 || logits.len() != n * classes {
            return Err(EngineError::Run(format!(
                "unexpected output of {} values for {n} images",
                logits.len()
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
