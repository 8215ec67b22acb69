//! The VM driver (issue 22): a real QEMU guest (TCG here, KVM where the host has it) boots
//! the guest image `--compute-driver vm` builds, with a vTPM from swtpm measured by OVMF and
//! Linux's EFI stub; the launcher inside runs a probe under runc. Its token's claims come from
//! the image's measured boot (the verifier matches the quoted PCR 4 and PCR 9 against the
//! reference value computed offline from the image files, so STABLE also proves the offline
//! computation right); the probe reaches only the API and its metadata server; and the same
//! boot with one byte of the initramfs changed gets no STABLE token, and is stopped as
//! Compute Engine stops a VM (its power button: the workload gets SIGTERM).
//!
//! One test: each boot costs tens of seconds of a core under TCG.

mod support;

use base64::Engine;
use support::instances::Secundus;

/// Prints its token, then dials what a workload in the guest might try (with `wait`, then
/// runs until SIGTERM, which it reports) (slirp's
/// `restrict=on` answers what it does not forward with a reset; the one-second bound only
/// keeps a silently dropped dial from stalling the probe).
const PROBE: &str = r#"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
static char buf[1 << 16];
static void on_term(int sig) {
  (void)sig;
  static const char said[] = "PROBE SIGTERM\n";
  if (write(1, said, sizeof said - 1) < 0) _exit(1);
  _exit(0);
}
static const char *dial(const char *ip, int port) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, ip, &a.sin_addr);
  if (connect(s, (struct sockaddr *)&a, sizeof a) == 0) { close(s); return "open"; }
  if (errno != EINPROGRESS) { close(s); return "refused"; }
  struct pollfd p = {s, POLLOUT, 0};
  if (poll(&p, 1, 1000) != 1) { close(s); return "unreachable"; }
  int err = 0; socklen_t len = sizeof err;
  getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len);
  close(s);
  return err == 0 ? "open" : "refused";
}
int main(int argc, char **argv) {
  FILE *f = fopen("/run/container_launcher/attestation_verifier_claims_token", "r");
  if (!f) { printf("PROBE no token file\n"); return 1; }
  size_t n = fread(buf, 1, sizeof buf - 1, f); buf[n] = 0; fclose(f);
  printf("PROBE TOKEN %s\n", buf);
  for (int i = 1; i < argc; i++) {
    char ip[64]; int port;
    if (sscanf(argv[i], "%63[^:]:%d", ip, &port) != 2) continue;
    printf("DIAL %s %s\n", argv[i], dial(ip, port));
  }
  printf("DEV %s\n", access("/dev/tpm0", F_OK) == 0 || access("/dev/tpmrm0", F_OK) == 0 ? "tpm present" : "no tpm");
  printf("PROBE DONE\n");
  fflush(stdout);
  /* `wait`: run on until stopped (SIGTERM, which the platform's stop must deliver). */
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "wait")) continue;
    signal(SIGTERM, on_term);
    printf("PROBE WAITING\n");
    fflush(stdout);
    for (;;) pause();
  }
  return 0;
}
"#;

fn claims(serial: &str) -> serde_json::Value {
    let token = serial
        .lines()
        .find_map(|l| l.strip_prefix("PROBE TOKEN "))
        .unwrap_or_else(|| panic!("no token on the console:\n{serial}"));
    let payload = token.trim().split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

fn dial<'a>(serial: &'a str, target: &str) -> &'a str {
    serial
        .lines()
        .find_map(|l| l.strip_prefix(&format!("DIAL {target} ")))
        .unwrap_or_else(|| panic!("no dial of {target}:\n{serial}"))
}

#[test]
fn a_vm_boots_the_measured_image_and_only_that_image_is_stable() {
    for needed in ["/usr/bin/qemu-system-x86_64", "/usr/share/ovmf/OVMF.fd"] {
        assert!(
            std::path::Path::new(needed).exists(),
            "{needed} is missing: run scripts/install-deps.sh"
        );
    }
    let s = Secundus::setup_with(&["--compute-driver", "vm"]);
    let (image, digest) = s.push_program(
        "vmprobe",
        PROBE,
        &[
            "tee.launch_policy.allow_cmd_override=true",
            "tee.launch_policy.log_redirect=always",
        ],
    );
    let api_port = s.host.rsplit(':').next().unwrap();
    let host_service = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host_port = host_service.local_addr().unwrap().port();
    let targets = [
        format!("127.0.0.1:{api_port}"),
        "169.254.169.254:80".to_owned(),
        "169.254.169.2:80".to_owned(),
        // The slirp gateway is the host: its services, the API's port there, a vTPM port.
        format!("169.254.169.1:{host_port}"),
        format!("169.254.169.1:{api_port}"),
        "169.254.169.1:2321".to_owned(),
        "169.254.169.254:2322".to_owned(),
        // The world outside.
        "1.1.1.1:443".to_owned(),
    ];
    let cmd = serde_json::to_string(&targets).unwrap();
    let metadata = format!(
        "^~^tee-image-reference={image}~tee-restart-policy=Never~tee-container-log-redirect=true~tee-cmd={cmd}"
    );

    s.create("measured", "VTPM", &metadata);
    let serial = s.finished_serial("measured");
    assert!(serial.contains("PROBE DONE"), "{serial}");
    let c = claims(&serial);
    assert_eq!(c["hwmodel"], "VTPM", "{c}");
    assert_eq!(c["submods"]["container"]["image_digest"], digest, "{c}");
    assert_eq!(c["dbgstat"], "disabled-since-boot", "{c}");
    // Google's numeric form of the release: major·10000 + minor·100 + patch.
    let release: Vec<u64> = env!("CARGO_PKG_VERSION")
        .split('.')
        .map(|p| p.parse().unwrap())
        .collect();
    let numeric = release[0] * 10_000 + release[1] * 100 + release[2];
    assert_eq!(
        c["swversion"],
        serde_json::json!([numeric.to_string()]),
        "{c}"
    );
    let attributes = c["submods"]["confidential_space"]["support_attributes"].clone();
    assert!(
        attributes
            .as_array()
            .is_some_and(|a| a.contains(&"STABLE".into())),
        "the measured boot matched no reference value: {c}"
    );
    assert_eq!(c["submods"]["gce"]["instance_name"], "measured", "{c}");
    // Reach: the API (through the guest's loopback, as the public URL names it) and the
    // metadata server; nothing of the host, nothing outside.
    let open = [true, true, true, false, false, false, false, false];
    for (target, open) in targets.iter().zip(open) {
        assert_eq!(dial(&serial, target) == "open", open, "{target}:\n{serial}");
    }
    assert!(serial.contains("DEV no tpm"), "{serial}");
    // The launcher's exit code came back from the guest: TERMINATED after a clean exit.
    assert_eq!(s.status("measured"), "TERMINATED");

    // One byte of the cached initramfs changed (an entry's mtime digit in its cpio header:
    // the guest still boots and runs the same launcher).
    let guest = s.w.dir.path().join("data/guest");
    let initrd = std::fs::read_dir(&guest)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("initrd.cpio"))
        .find(|p| p.exists())
        .expect("the cached initramfs");
    let mut bytes = std::fs::read(&initrd).unwrap();
    assert_eq!(&bytes[..6], b"070701");
    bytes[46 + 7] = b'1';
    std::fs::write(&initrd, &bytes).unwrap();
    // This one runs until stopped: Compute Engine's stop presses the guest's power button.
    let mut waiting = targets.to_vec();
    waiting.push("wait".into());
    let metadata = format!(
        "^~^tee-image-reference={image}~tee-restart-policy=Never~tee-container-log-redirect=true~tee-cmd={}",
        serde_json::to_string(&waiting).unwrap()
    );
    s.create("forged", "VTPM", &metadata);
    let serial = s.wait_for("forged", "PROBE WAITING");
    let c = claims(&serial);
    assert_eq!(c["submods"]["container"]["image_digest"], digest, "{c}");
    assert_eq!(c["dbgstat"], "enabled", "{c}");
    assert_eq!(
        c["submods"]["confidential_space"]["support_attributes"],
        serde_json::json!([]),
        "an edited initramfs must get no support attributes: {c}"
    );
    // Stopped, the workload got SIGTERM through the launcher (its grace, as on Compute
    // Engine), not a killed VM; the stopped instance keeps its console.
    s.alice(&[
        "compute",
        "instances",
        "stop",
        "forged",
        "--project",
        "secundus-bank",
        "--zone",
        "us-west1-b",
    ]);
    assert_eq!(s.status("forged"), "TERMINATED");
    let serial = s.serial("forged");
    for said in [
        "[init] power button: stopping the launcher",
        "SIGTERM: stopping the workload",
        "PROBE SIGTERM",
    ] {
        assert!(serial.contains(said), "no {said:?}:\n{serial}");
    }
    assert!(!serial.contains("did not end in time"), "{serial}");
}
