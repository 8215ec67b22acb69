//! `cloister demo`: the codelab end to end on a fresh embedded server in a temp dir. The steps
//! are the scripts of `examples/ml-model-protection/` (compiled in, so the binary carries the
//! exact story the repository documents), run with this binary as the CLI and the server.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::Args;

/// (path in the repository, content): the story's scripts and the demo data generators.
const FILES: &[(&str, &str)] = &[
    (
        "examples/ml-model-protection/config_env.sh",
        include_str!("../../../examples/ml-model-protection/config_env.sh"),
    ),
    (
        "examples/ml-model-protection/1_setup_primus_resources.sh",
        include_str!("../../../examples/ml-model-protection/1_setup_primus_resources.sh"),
    ),
    (
        "examples/ml-model-protection/2_setup_secundus_resources.sh",
        include_str!("../../../examples/ml-model-protection/2_setup_secundus_resources.sh"),
    ),
    (
        "examples/ml-model-protection/3_create_workload.sh",
        include_str!("../../../examples/ml-model-protection/3_create_workload.sh"),
    ),
    (
        "examples/ml-model-protection/4_authorize_workload.sh",
        include_str!("../../../examples/ml-model-protection/4_authorize_workload.sh"),
    ),
    (
        "examples/ml-model-protection/5_run_workload.sh",
        include_str!("../../../examples/ml-model-protection/5_run_workload.sh"),
    ),
    (
        "examples/ml-model-protection/6_view_results.sh",
        include_str!("../../../examples/ml-model-protection/6_view_results.sh"),
    ),
    (
        "examples/ml-model-protection/7_cleanup.sh",
        include_str!("../../../examples/ml-model-protection/7_cleanup.sh"),
    ),
    (
        "examples/ml-model-protection/8_sign_workload.sh",
        include_str!("../../../examples/ml-model-protection/8_sign_workload.sh"),
    ),
    (
        "examples/ml-model-protection/9_authorize_signed_workloads.sh",
        include_str!("../../../examples/ml-model-protection/9_authorize_signed_workloads.sh"),
    ),
    (
        "examples/ml-model-protection/demo.sh",
        include_str!("../../../examples/ml-model-protection/demo.sh"),
    ),
    (
        "workloads/ml-inference/demo/make_demo_model.py",
        include_str!("../../../workloads/ml-inference/demo/make_demo_model.py"),
    ),
    (
        "workloads/ml-inference/demo/make_demo_images.py",
        include_str!("../../../workloads/ml-inference/demo/make_demo_images.py"),
    ),
];

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The workload binary [default: `ml-inference` beside this binary].
    #[arg(long)]
    workload: Option<PathBuf>,
    /// ONNX Runtime's libonnxruntime.so [default: ORT_LIBRARY, else the onnxruntime wheel's].
    #[arg(long, env = "ORT_LIBRARY")]
    ort_library: Option<PathBuf>,
    /// How the demo's server runs instances: `local` (runc on this host) or `vm` (one QEMU
    /// guest each; slow under TCG).
    #[arg(long, value_enum, default_value = "local")]
    driver: crate::server::ComputeDriver,
    /// Keep the demo's server running at the end, and print one-time console links for
    /// Primus and Secundus, to look at the story in the console.
    #[arg(long)]
    keep: bool,
    /// Add the signed-release act: Primus signs the workload and trusts its key instead of one
    /// digest; a new signed release runs with no policy edit, an unsigned image and one signed
    /// by another key are refused.
    #[arg(long)]
    signed_release: bool,
}

fn ort_from_wheel() -> Result<PathBuf> {
    let out = std::process::Command::new("python3")
        .args(["-c", "import glob, os, onnxruntime; print(sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi', 'libonnxruntime.so*')))[0])"])
        .output()
        .context("running python3 to find the onnxruntime wheel")?;
    if !out.status.success() {
        bail!(
            "no ONNX Runtime: install the onnxruntime wheel (scripts/install-deps.sh) or pass --ort-library\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn prepare(args: &DemoArgs) -> Result<(tempfile::TempDir, PathBuf, PathBuf, PathBuf)> {
    let me = std::env::current_exe().context("locating this binary")?;
    let workload = args
        .workload
        .clone()
        .unwrap_or_else(|| me.with_file_name("ml-inference"));
    if !workload.exists() {
        bail!(
            "the workload binary {} is missing: build it (`cargo build --bin ml-inference`) or pass --workload",
            workload.display()
        );
    }
    let ort = match args.ort_library.clone() {
        Some(p) => p,
        None => ort_from_wheel()?,
    };
    let dir = tempfile::tempdir()?;
    for (path, content) in FILES {
        let target = dir.path().join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, content)?;
        if path.ends_with(".sh") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok((dir, me, workload, ort))
}

pub fn run(args: DemoArgs) -> ExitCode {
    let prepared = prepare(&args);
    let (dir, me, workload, ort) = match prepared {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ERROR: (cloister.demo) {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let script: &Path = &dir.path().join("examples/ml-model-protection/demo.sh");
    let status = std::process::Command::new("bash")
        .arg(script)
        .env("CLOISTER", &me)
        .env("ML_INFERENCE", &workload)
        .env("ORT_LIBRARY", &ort)
        .env("DEMO_KEEP", if args.keep { "1" } else { "0" })
        .env(
            "DEMO_SIGNED_RELEASE",
            if args.signed_release { "1" } else { "0" },
        )
        // The demo's server reads it (`cloister server --compute-driver`).
        .env(
            "CLOISTER_COMPUTE_DRIVER",
            match args.driver {
                crate::server::ComputeDriver::Local => "local",
                crate::server::ComputeDriver::Vm => "vm",
            },
        )
        .status();
    match status {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("ERROR: (cloister.demo) running bash: {e}");
            ExitCode::FAILURE
        }
    }
}
