//! A Secundus world for instance tests and the instance benchmark: a project, the workload
//! service account (workloadUser, registry reader), a repository, and two workload images
//! built from C (a probe that prints its tokens, and the same program without launch-policy
//! labels).

use std::time::{Duration, Instant};

use super::World;

pub const PROBE: &str = r#"
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
static char buf[1 << 16];
int main(int argc, char **argv) {
  FILE *f = fopen("/run/container_launcher/attestation_verifier_claims_token", "r");
  if (!f) { printf("PROBE no token file\n"); return 1; }
  size_t n = fread(buf, 1, sizeof buf - 1, f); buf[n] = 0; fclose(f);
  printf("PROBE DEFAULT %s\n", buf);
  for (int i = 1; i < argc; i++) printf("PROBE ARG %s\n", argv[i]);
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un a = {0};
  a.sun_family = AF_UNIX;
  strcpy(a.sun_path, "/run/container_launcher/teeserver.sock");
  if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) { perror("PROBE connect"); return 1; }
  const char *body = "{\"audience\":\"https://secundus.example/custom\",\"nonces\":[\"0123456789abcdef\"],\"token_type\":\"OIDC\"}";
  char req[1024];
  int len = snprintf(req, sizeof req, "POST /v1/token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s", strlen(body), body);
  if (write(s, req, len) != len) return 1;
  size_t total = 0; ssize_t r;
  while ((r = read(s, buf + total, sizeof buf - 1 - total)) > 0) total += r;
  buf[total] = 0;
  char *tok = strstr(buf, "\r\n\r\n");
  printf("PROBE CUSTOM %s\n", tok ? tok + 4 : buf);
  printf("PROBE DONE\n");
  return 0;
}
"#;

pub struct Secundus {
    pub w: World,
    pub host: String,
    pub image: String,
    pub digest: String,
    pub strict_image: String,
}

impl Secundus {
    pub fn alice(&self, args: &[&str]) -> String {
        let mut all = vec!["--profile", "alice"];
        all.extend(args);
        self.w.cli.ok(&all)
    }

    pub fn setup() -> Secundus {
        Self::setup_with(&[])
    }

    pub fn setup_with(server_flags: &[&str]) -> Secundus {
        let w = World::with_users(server_flags);
        let host = w.server.endpoint().trim_start_matches("http://").to_owned();
        let s = Secundus {
            w,
            host,
            image: String::new(),
            digest: String::new(),
            strict_image: String::new(),
        };
        super::attestation::create_workload_account(&s.w);
        let sa = &format!("serviceAccount:{}", super::attestation::SA);
        s.alice(&[
            "artifacts",
            "repositories",
            "create",
            "workloads",
            "--project",
            "secundus-bank",
        ]);
        s.alice(&[
            "artifacts",
            "repositories",
            "add-iam-policy-binding",
            "workloads",
            "--project",
            "secundus-bank",
            "--member",
            sa,
            "--role",
            "roles/artifactregistry.reader",
        ]);
        let (image, digest) = s.push_program(
            "probe",
            PROBE,
            &[
                "tee.launch_policy.allow_cmd_override=true",
                "tee.launch_policy.log_redirect=always",
            ],
        );
        // The same program, with no launch policy labels at all.
        let (strict_image, _) = s.push_program("strict", PROBE, &[]);
        Secundus {
            digest,
            image,
            strict_image,
            ..s
        }
    }

    pub fn create(&self, name: &str, kind: &str, metadata: &str) {
        self.alice(&[
            "compute",
            "instances",
            "create",
            name,
            "--project",
            "secundus-bank",
            "--zone",
            "us-west1-b",
            "--confidential-compute-type",
            kind,
            "--service-account",
            "workload-sa@secundus-bank.iam.gserviceaccount.com",
            "--metadata",
            metadata,
        ]);
    }

    /// Pushes a program built from C source as HOST/secundus-bank/workloads/NAME:v1; returns
    /// the image reference and its digest.
    pub fn push_program(&self, name: &str, source: &str, labels: &[&str]) -> (String, String) {
        let src = self.w.dir.path().join(format!("{name}.c"));
        std::fs::write(&src, source).unwrap();
        let exe = self.w.dir.path().join(name);
        let out = std::process::Command::new("gcc")
            .args([
                "-static",
                "-O1",
                "-o",
                exe.to_str().unwrap(),
                src.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let image = format!("{}/secundus-bank/workloads/{name}:v1", self.host);
        let mut args = vec![
            "artifacts",
            "push",
            &image,
            "--executable",
            exe.to_str().unwrap(),
        ];
        for l in labels {
            args.extend(["--label", l]);
        }
        let digest = self.alice(&args).trim().to_owned();
        (image, digest)
    }

    /// Waits until the serial console contains `text`.
    pub fn wait_for(&self, name: &str, text: &str) -> String {
        self.wait_for_times(name, text, 1)
    }

    /// Waits until the serial console contains `text` `times` times (a restarted run's).
    pub fn wait_for_times(&self, name: &str, text: &str, times: usize) -> String {
        let start = Instant::now();
        loop {
            let serial = self.serial(name);
            if serial.matches(text).count() >= times {
                return serial;
            }
            assert!(
                start.elapsed() < Duration::from_secs(300),
                "{name}: no {text:?} in:\n{serial}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn status(&self, name: &str) -> String {
        self.alice(&[
            "compute",
            "instances",
            "describe",
            name,
            "--project",
            "secundus-bank",
            "--zone",
            "us-west1-b",
            "--format",
            "value(status)",
        ])
        .trim()
        .to_owned()
    }

    /// The serial console once the instance has stopped (polling, not a time limit on speed:
    /// the bound only keeps a hung launcher from hanging the suite).
    pub fn finished_serial(&self, name: &str) -> String {
        let start = Instant::now();
        while self.status(name) != "TERMINATED" {
            assert!(
                start.elapsed() < Duration::from_secs(300),
                "{name} never stopped:\n{}",
                self.serial(name)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        self.serial(name)
    }

    pub fn serial(&self, name: &str) -> String {
        self.alice(&[
            "compute",
            "instances",
            "get-serial-port-output",
            name,
            "--project",
            "secundus-bank",
            "--zone",
            "us-west1-b",
        ])
    }
}

/// How many processes of this host run `program` (a workload's path inside its image).
pub fn processes_running(program: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|c| String::from_utf8_lossy(c).starts_with(program))
        .count()
}

pub const COUNTER: &str = r#"
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "ok";
  int n = 0;
  FILE *f = fopen("/count", "r");
  if (f) { if (fscanf(f, "%d", &n) != 1) n = 0; fclose(f); }
  n++;
  f = fopen("/count", "w"); fprintf(f, "%d", n); fclose(f);
  printf("RUN %d %s\n", n, mode);
  fflush(stdout);
  if (!strcmp(mode, "flaky")) return n < 3 ? 1 : 0;
  if (!strcmp(mode, "fail")) return 1;
  if (!strcmp(mode, "sleep")) for (;;) sleep(1);
  return 0;
}
"#;

pub const COUNTER_LABELS: &[&str] = &[
    "tee.launch_policy.allow_cmd_override=true",
    "tee.launch_policy.log_redirect=always",
];
