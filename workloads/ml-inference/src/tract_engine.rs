//! The pure-Rust engine: tract (feature `tract`). Same models, same answers as ONNX Runtime
//! (the correctness tests run on both); about a third of its speed on this machine.

use tract_onnx::prelude::*;

pub struct TractModel {
    plan: std::sync::Arc<TypedRunnableModel>,
}

impl TractModel {
    /// The optimised model and its input shape (a symbolic batch reads as -1).
    pub fn load(bytes: &[u8]) -> Result<(Self, Vec<i64>), String> {
        let model = tract_onnx::onnx()
            .model_for_read(&mut &bytes[..])
            .and_then(|m| m.into_optimized())
            .map_err(|e| format!("{e:#}"))?;
        let fact = model.input_fact(0).map_err(|e| format!("{e:#}"))?.clone();
        let shape = fact
            .shape
            .iter()
            .map(|d| d.to_i64().unwrap_or(-1))
            .collect();
        let plan = model.into_runnable().map_err(|e| format!("{e:#}"))?;
        Ok((TractModel { plan }, shape))
    }

    /// Runs one batch; returns (classes, logits).
    pub fn run(&self, shape: [usize; 4], data: Vec<f32>) -> Result<(usize, Vec<f32>), String> {
        let input =
            tract_ndarray::Array4::from_shape_vec(shape, data).map_err(|e| e.to_string())?;
        let out = self
            .plan
            .run(tvec!(input.into_tensor().into()))
            .map_err(|e| format!("{e:#}"))?;
        let view = out[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| format!("{e:#}"))?;
        let classes = view.shape().last().copied().unwrap_or(0);
        Ok((classes, view.iter().copied().collect()))
    }
}
