//! Classifying a list of images: decoding and resizing run on worker threads, one batch ahead
//! of the model, so the CPU decodes the next batch while ONNX Runtime runs this one.

use std::sync::mpsc;

use crate::engine::Engine;
use crate::format::{Outcome, top_k};
use crate::preprocess;

/// Fetches one image's bytes (a file read, or a download).
pub type Fetch = Box<dyn FnOnce() -> Result<Vec<u8>, String> + Send>;

/// An image's name and its prepared pixels (or why it could not be prepared).
type Prepared = (String, Result<Vec<f32>, String>);

/// Names the workload classifies: `.jpg`, `.jpeg`, `.png` in any case.
pub fn is_image_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".jpg", ".jpeg", ".png"]
        .iter()
        .any(|ext| lower.ends_with(ext))
}

fn prepare(fetch: Fetch, w: usize, h: usize) -> Result<Vec<f32>, String> {
    let bytes = fetch()?;
    let (sw, sh, rgb) =
        preprocess::decode(&bytes).map_err(|e| e.to_string().trim_end().to_owned())?;
    Ok(preprocess::resize_bilinear(
        &rgb,
        sw as usize,
        sh as usize,
        w,
        h,
    ))
}

/// Classifies `images` in order, `batch` at a time; a failure of one image is its own outcome.
pub fn classify(
    engine: &mut Engine,
    images: Vec<(String, Fetch)>,
    batch: usize,
    workers: usize,
) -> Vec<(String, Outcome)> {
    let (w, h) = (engine.width, engine.height);
    let batch = batch.max(1);
    let mut results = Vec::with_capacity(images.len());
    let (tx, rx) = mpsc::sync_channel::<Vec<Prepared>>(1);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut pending = images.into_iter();
            loop {
                let chunk: Vec<(String, Fetch)> = pending.by_ref().take(batch).collect();
                if chunk.is_empty() {
                    break;
                }
                // Decode the batch across `workers` threads, keeping the order.
                let mut slots: Vec<Option<Prepared>> = Vec::new();
                slots.resize_with(chunk.len(), || None);
                let per = chunk.len().div_ceil(workers.max(1));
                let mut items: Vec<(usize, String, Fetch)> = chunk
                    .into_iter()
                    .enumerate()
                    .map(|(i, (n, f))| (i, n, f))
                    .collect();
                std::thread::scope(|inner| {
                    let mut handles = Vec::new();
                    while !items.is_empty() {
                        let part: Vec<_> = items.drain(..per.min(items.len())).collect();
                        handles.push(inner.spawn(move || {
                            part.into_iter()
                                .map(|(i, n, f)| (i, n, prepare(f, w, h)))
                                .collect::<Vec<_>>()
                        }));
                    }
                    for handle in handles {
                        for (i, n, r) in handle.join().unwrap_or_default() {
                            slots[i] = Some((n, r));
                        }
                    }
                });
                if tx.send(slots.into_iter().flatten().collect()).is_err() {
                    break;
                }
            }
        });
        for prepared in rx {
            let mut pixels = Vec::new();
            let mut ok = Vec::new();
            for (name, r) in &prepared {
                if let Ok(p) = r {
                    pixels.extend_from_slice(p);
                    ok.push(name.clone());
                }
            }
            let logits = if ok.is_empty() {
                Ok(vec![])
            } else {
                engine.run(pixels, ok.len())
            };
            let mut rows = match logits {
                Ok(rows) => rows.into_iter(),
                Err(e) => {
                    for (name, _) in prepared {
                        results.push((name, Outcome::Failed(e.to_string())));
                    }
                    continue;
                }
            };
            for (name, r) in prepared {
                match r {
                    Ok(_) => match rows.next() {
                        Some(l) => results.push((name, top_k(&l, 5))),
                        None => results.push((
                            name,
                            Outcome::Failed("the model returned too few rows".into()),
                        )),
                    },
                    Err(e) => results.push((name, Outcome::Failed(e))),
                }
            }
        }
    });
    results
}
