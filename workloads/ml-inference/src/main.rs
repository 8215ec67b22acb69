//! `ml-inference`: the codelab's workload. `run` (inside the TEE) releases the model through
//! attested federation and writes the result object; `classify` runs the same inference
//! offline on local files, printing exactly what `result` would hold.

mod classify;
mod cloud;
mod engine;
mod format;
mod preprocess;
#[cfg(feature = "tract")]
mod tract_engine;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use sha2::Digest;

use classify::{Fetch, classify, is_image_name};
use cloud::Cloud;
use engine::Engine;

#[derive(Parser)]
#[command(name = "ml-inference", about = "The codelab's ML inference workload")]
struct Cli {
    /// The inference engine.
    #[arg(long, global = true, value_enum, default_value = "ort")]
    engine: engine::EngineKind,
    #[command(subcommand)]
    command: Command,
}

/// The engine chosen on the command line (set once in `main`).
static ENGINE: std::sync::OnceLock<engine::EngineKind> = std::sync::OnceLock::new();

fn load_engine(model: &[u8]) -> Result<Engine, engine::EngineError> {
    Engine::load_with(
        *ENGINE.get().unwrap_or(&engine::EngineKind::Ort),
        model,
        workers(),
    )
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Codelab,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Classify local images with a local model; prints what `result` would hold.
    Classify {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        images: PathBuf,
        #[arg(long, value_enum, default_value = "codelab")]
        format: Format,
        /// Images per model run: 8 keeps MobileNet's activations in cache (measured faster
        /// than 32 here; see bench/).
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Refuse the model unless its SHA-256 is this.
        #[arg(long)]
        model_sha256: Option<String>,
        /// Print the time spent in the model (the benchmark's model stage) to stderr.
        #[arg(long, hide = true)]
        report_timing: bool,
    },
    /// Writes each image's preprocessed input tensor and the model's logits as raw
    /// little-endian float32 files (NAME.input, NAME.logits), for comparing with other engines.
    #[command(hide = true)]
    Tensors {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        images: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Times the model alone on tensors written by `tensors` (the benchmark's model stage,
    /// measured like ONNX Runtime from Python: same inputs, no decoding running beside it).
    #[command(hide = true)]
    BenchModel {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        tensors: PathBuf,
        /// Images per model run: 8 keeps MobileNet's activations in cache (measured faster
        /// than 32 here; see bench/).
        #[arg(long, default_value_t = 8)]
        batch: usize,
    },
    /// Prints each image's preprocessed pixels at SIZE×SIZE as JSON (checked against
    /// TensorFlow's golden output).
    #[command(hide = true)]
    Preprocess {
        #[arg(long)]
        images: PathBuf,
        #[arg(long)]
        size: usize,
    },
    /// Inside the TEE: get the model through federation, classify the input bucket, write
    /// `result` and `result.json` to the result bucket.
    Run {
        /// The workload identity provider's audience (//iam.googleapis.com/projects/N/…).
        #[arg(long)]
        provider: String,
        /// Primus's service account, impersonated after the exchange.
        #[arg(long)]
        service_account: String,
        /// gs://BUCKET/OBJECT of the model (plain ONNX or a `cloister kms encrypt-file` envelope).
        #[arg(long)]
        model: String,
        /// Refuse the model unless its SHA-256 (of the plaintext) is this.
        #[arg(long)]
        model_sha256: Option<String>,
        #[arg(long)]
        input_bucket: String,
        #[arg(long)]
        result_bucket: String,
        /// Images per model run: 8 keeps MobileNet's activations in cache (measured faster
        /// than 32 here; see bench/).
        #[arg(long, default_value_t = 8)]
        batch: usize,
    },
}

fn workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

fn check_pin(bytes: &[u8], pinned: Option<&str>) -> Result<(), String> {
    if let Some(want) = pinned {
        let got = hex::encode(sha2::Sha256::digest(bytes));
        if !got.eq_ignore_ascii_case(want.trim_start_matches("sha256:")) {
            return Err(format!(
                "the model's SHA-256 is {got}, not the pinned {want}; refusing to use it"
            ));
        }
    }
    Ok(())
}

fn offline(
    model: &Path,
    images: &Path,
    format: Format,
    batch: usize,
    pinned: Option<&str>,
) -> Result<()> {
    let bytes = std::fs::read(model).with_context(|| format!("reading {}", model.display()))?;
    check_pin(&bytes, pinned).map_err(anyhow::Error::msg)?;
    let mut engine = load_engine(&bytes)?;
    let mut names: Vec<String> = std::fs::read_dir(images)
        .with_context(|| format!("reading {}", images.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| is_image_name(n))
        .collect();
    names.sort();
    let items: Vec<(String, Fetch)> = names
        .into_iter()
        .map(|n| {
            let path = images.join(&n);
            let fetch: Fetch = Box::new(move || std::fs::read(&path).map_err(|e| e.to_string()));
            (n, fetch)
        })
        .collect();
    let results = classify(&mut engine, items, batch, workers());
    if engine::REPORT_TIMING.load(std::sync::atomic::Ordering::Relaxed) {
        let nanos = engine::MODEL_NANOS.load(std::sync::atomic::Ordering::Relaxed);
        eprintln!(
            "model stage: {} images in {:.1} ms",
            results.len(),
            nanos as f64 / 1e6
        );
    }
    match format {
        Format::Codelab => print!("{}", format::codelab(&results)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&format::json(&results))?),
    }
    Ok(())
}

fn tensors(model: &Path, images: &Path, out: &Path) -> Result<()> {
    let mut engine = load_engine(&std::fs::read(model)?)?;
    std::fs::create_dir_all(out)?;
    let raw = |v: &[f32]| v.iter().flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>();
    for entry in std::fs::read_dir(images)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if !is_image_name(&name) {
            continue;
        }
        let Ok((w, h, rgb)) = preprocess::decode(&std::fs::read(images.join(&name))?) else {
            continue;
        };
        let input =
            preprocess::resize_bilinear(&rgb, w as usize, h as usize, engine.width, engine.height);
        let logits = engine.run(input.clone(), 1)?;
        std::fs::write(out.join(format!("{name}.input")), raw(&input))?;
        std::fs::write(out.join(format!("{name}.logits")), raw(&logits[0]))?;
    }
    Ok(())
}

fn preprocessed(images: &Path, size: usize) -> Result<()> {
    let mut out = serde_json::Map::new();
    for entry in std::fs::read_dir(images)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let (true, Ok((w, h, rgb))) = (
            is_image_name(&name),
            preprocess::decode(&std::fs::read(images.join(&name))?),
        ) {
            let pixels = preprocess::resize_bilinear(&rgb, w as usize, h as usize, size, size);
            out.insert(name, serde_json::json!(pixels));
        }
    }
    println!("{}", serde_json::Value::Object(out));
    Ok(())
}

fn bench_model(model: &Path, tensors: &Path, batch: usize) -> Result<()> {
    let mut engine = load_engine(&std::fs::read(model)?)?;
    let mut inputs: Vec<Vec<f32>> = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(tensors)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "input"))
        .collect();
    names.sort();
    for p in names {
        let bytes = std::fs::read(p)?;
        inputs.push(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        );
    }
    let mut best = f64::MAX;
    for _ in 0..3 {
        let started = std::time::Instant::now();
        for chunk in inputs.chunks(batch.max(1)) {
            engine.run(chunk.concat(), chunk.len())?;
        }
        best = best.min(started.elapsed().as_secs_f64());
    }
    println!("{}", inputs.len() as f64 / best);
    Ok(())
}

fn parse_gs(url: &str) -> Result<(String, String)> {
    let rest = url
        .strip_prefix("gs://")
        .with_context(|| format!("{url} is not gs://BUCKET/OBJECT"))?;
    let (b, o) = rest
        .split_once('/')
        .with_context(|| format!("{url} names no object"))?;
    Ok((b.to_owned(), o.to_owned()))
}

/// The model's plaintext: downloaded as Primus, unwrapped through KMS when it is an envelope,
/// checked against the pinned digest.
fn fetch_model(
    cloud: &Cloud,
    token: &str,
    url: &str,
    pinned: Option<&str>,
) -> Result<Vec<u8>, String> {
    let (bucket, object) = parse_gs(url).map_err(|e| e.to_string())?;
    let bytes = cloud.download(token, &bucket, &object)?;
    let plain = match cloister_envelope::read_header(&mut bytes.as_slice()) {
        Ok((header, header_bytes)) => {
            let key: [u8; 32] = cloud
                .kms_decrypt(token, &header.kms_key, &header.wrapped_key)?
                .try_into()
                .map_err(|_| "the unwrapped data key is not 32 bytes".to_owned())?;
            let mut body = &bytes[bytes.len().min(24 + header_bytes.len())..];
            let mut out = Vec::new();
            cloister_envelope::decrypt(&key, &header, &header_bytes, &mut body, &mut out)
                .map_err(|e| format!("the encrypted model does not decrypt: {e}"))?;
            out
        }
        Err(cloister_envelope::EnvelopeError::NotEnvelope) => bytes,
        Err(e) => {
            return Err(format!(
                "the model looks like an envelope but is not one: {e}"
            ));
        }
    };
    if let Some(want) = pinned {
        let got = hex::encode(sha2::Sha256::digest(&plain));
        if !got.eq_ignore_ascii_case(want.trim_start_matches("sha256:")) {
            return Err(format!(
                "the model's SHA-256 is {got}, not the pinned {want}; refusing to use it"
            ));
        }
    }
    Ok(plain)
}

#[allow(clippy::too_many_arguments)]
fn online(
    provider: &str,
    service_account: &str,
    model: &str,
    pinned: Option<&str>,
    input: &str,
    output: &str,
    batch: usize,
) -> Result<()> {
    let cloud = Cloud::from_env().map_err(anyhow::Error::msg)?;
    let own = cloud.instance_token().map_err(anyhow::Error::msg)?;
    // Everything up to the image list decides whether there is a result at all.
    let prepared = (|| -> Result<(Engine, Vec<String>), String> {
        let primus = cloud.primus_token(provider, service_account)?;
        let model = fetch_model(&cloud, &primus, model, pinned)?;
        let engine = load_engine(&model).map_err(|e| e.to_string())?;
        let mut names: Vec<String> = cloud
            .list(&own, input)?
            .into_iter()
            .filter(|n| is_image_name(n))
            .collect();
        names.sort();
        Ok((engine, names))
    })();
    let (text, json) = match prepared {
        Err(e) => {
            eprintln!("Error: {e}");
            (format!("Error: {e}"), serde_json::json!({"error": e}))
        }
        Ok((mut engine, names)) => {
            let items: Vec<(String, Fetch)> = names
                .into_iter()
                .map(|n| {
                    let (cloud, token, bucket, name) =
                        (Cloud::from_env(), own.clone(), input.to_owned(), n.clone());
                    let fetch: Fetch = Box::new(move || cloud?.download(&token, &bucket, &name));
                    (n, fetch)
                })
                .collect();
            let results = classify(&mut engine, items, batch, workers());
            (format::codelab(&results), format::json(&results))
        }
    };
    cloud
        .upload(
            &own,
            output,
            "result",
            "text/plain",
            text.clone().into_bytes(),
        )
        .map_err(anyhow::Error::msg)?;
    cloud
        .upload(
            &own,
            output,
            "result.json",
            "application/json",
            serde_json::to_vec_pretty(&json)?,
        )
        .map_err(anyhow::Error::msg)?;
    print!("{text}");
    if text.starts_with("Error: ") {
        bail!(
            "the workload could not run: {}",
            text.trim_start_matches("Error: ")
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = ENGINE.set(cli.engine);
    let result = match cli.command {
        Command::Classify {
            model,
            images,
            format,
            batch,
            model_sha256,
            report_timing,
        } => {
            engine::REPORT_TIMING.store(report_timing, std::sync::atomic::Ordering::Relaxed);
            offline(&model, &images, format, batch, model_sha256.as_deref())
        }
        Command::Tensors { model, images, out } => tensors(&model, &images, &out),
        Command::Preprocess { images, size } => preprocessed(&images, size),
        Command::BenchModel {
            model,
            tensors,
            batch,
        } => bench_model(&model, &tensors, batch),
        Command::Run {
            provider,
            service_account,
            model,
            model_sha256,
            input_bucket,
            result_bucket,
            batch,
        } => online(
            &provider,
            &service_account,
            &model,
            model_sha256.as_deref(),
            &input_bucket,
            &result_bucket,
            batch,
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ERROR: {e:#}");
            ExitCode::FAILURE
        }
    }
}
