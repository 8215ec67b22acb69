//! Instances cannot touch each other or the host (issue 18 §1). A hostile workload, a real
//! program under runc in a real instance beside another VTPM instance, tries what once forged
//! a STABLE attestation token: every TCP port of every address it can see (the host's
//! loopback, the other instance's swtpm and metadata server, a port this test holds open on
//! the host), the vTPM's control channel (CMD_INIT resets every PCR: the forge's first step),
//! a TPM device, a user namespace, a mount. Only its own metadata server and Cloister's API
//! answer; the rest is refused.

mod support;

use std::collections::BTreeSet;

use support::instances::Secundus;

/// The hostile workload. `wait` idles (the neighbour); anything else probes, then prints
/// `PROBE DONE`. Extra arguments are `IP:PORT` targets to dial.
const HOSTILE: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
static int dial(const char *ip, int port) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, ip, &a.sin_addr);
  if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) { int e = errno; close(s); errno = e; return -1; }
  /* A port in the ephemeral range can connect to itself (TCP simultaneous open): nobody
     listens there. */
  struct sockaddr_in local = {0};
  socklen_t len = sizeof local;
  if (getsockname(s, (struct sockaddr *)&local, &len) == 0 && local.sin_port == a.sin_port
      && local.sin_addr.s_addr == a.sin_addr.s_addr) { close(s); errno = ECONNREFUSED; return -1; }
  return s;
}
static char buf[1 << 16];
static void get(const char *path) {
  int s = dial("169.254.169.254", 80);
  if (s < 0) { printf("META %s unreachable: %s\n", path, strerror(errno)); return; }
  char req[512];
  int n = snprintf(req, sizeof req, "GET /computeMetadata/v1/%s HTTP/1.1\r\nHost: metadata.google.internal\r\nMetadata-Flavor: Google\r\nConnection: close\r\n\r\n", path);
  if (write(s, req, n) != n) return;
  size_t total = 0; ssize_t r;
  while ((r = read(s, buf + total, sizeof buf - 1 - total)) > 0) total += r;
  buf[total] = 0;
  close(s);
  char *body = strstr(buf, "\r\n\r\n");
  printf("META %s %s\n", path, body ? body + 4 : "(no body)");
}
int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "wait")) { printf("WAITING\n"); fflush(stdout); for (;;) sleep(1); }
  const char *ips[] = {"127.0.0.1", "169.254.169.254"};
  for (int i = 0; i < 2; i++) {
    printf("OPEN %s", ips[i]);
    for (int p = 1; p < 65536; p++) { int s = dial(ips[i], p); if (s >= 0) { printf(" %d", p); close(s); } }
    printf("\n");
  }
  /* The forge's first step: CMD_INIT on swtpm's control channel resets every PCR. */
  int s = dial("127.0.0.1", 2322);
  if (s < 0) printf("FORGE refused: %s\n", strerror(errno));
  else {
    unsigned char cmd[8] = {0, 0, 0, 2, 0, 0, 0, 0}, resp[4];
    ssize_t w = write(s, cmd, sizeof cmd);
    ssize_t n = read(s, resp, sizeof resp);
    printf("FORGE the vTPM was reset (%zd, %zd)\n", w, n);
    close(s);
  }
  for (int i = 2; i < argc; i++) {
    char ip[64]; int port;
    if (sscanf(argv[i], "%63[^:]:%d", ip, &port) != 2) continue;
    s = dial(ip, port);
    printf("DIAL %s %s\n", argv[i], s >= 0 ? "open" : "refused");
    if (s >= 0) close(s);
  }
  /* A new user namespace would hand the workload every capability inside it. */
  printf("USERNS %s\n", unshare(CLONE_NEWUSER) == 0 ? "created" : strerror(errno));
  printf("MOUNT %s\n", mount("none", "/tmp", "tmpfs", 0, 0) == 0 ? "mounted" : strerror(errno));
  printf("DEV %s\n", access("/dev/tpm0", F_OK) == 0 || access("/dev/tpmrm0", F_OK) == 0 ? "tpm present" : "no tpm");
  /* Where its writes go: the instance's own disk, not the host's. */
  struct statvfs root;
  if (statvfs("/", &root) == 0) printf("DISK %llu\n", (unsigned long long)root.f_blocks * root.f_frsize);
  get("instance/name");
  get("instance/service-accounts/default/email");
  printf("PROBE DONE\n");
  fflush(stdout);
  /* Rewrite the console from the start: the launcher's lines would be gone. */
  int console = open("/proc/self/fd/1", O_WRONLY | O_TRUNC);
  if (console >= 0) { if (write(console, "REWRITTEN\n", 10) != 10) return 1; close(console); }
  return 0;
}
"#;

fn line<'a>(serial: &'a str, prefix: &str) -> &'a str {
    serial
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in the serial output:\n{serial}"))
}

fn ports(list: &str) -> BTreeSet<u16> {
    list.split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

/// swtpm processes whose state lives under `data` (this test's server's instances).
fn swtpms(data: &std::path::Path) -> usize {
    let needle = data.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.starts_with("swtpm") && c.contains(&needle))
        .count()
}

#[test]
fn a_workload_reaches_only_its_own_metadata_server_and_the_api() {
    let s = Secundus::setup_with(&["--instance-disk-gb", "1"]);
    let (image, _) = s.push_program(
        "hostile",
        HOSTILE,
        &[
            "tee.launch_policy.allow_cmd_override=true",
            "tee.launch_policy.log_redirect=always",
        ],
    );
    let data = s.w.dir.path().join("data");
    let api_port: u16 = s.host.rsplit(':').next().unwrap().parse().unwrap();
    // A port on the host's loopback, as PostgreSQL's or Garage's would be.
    let host_service = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host_port = host_service.local_addr().unwrap().port();

    let metadata = |cmd: &str| {
        format!(
            "^~^tee-image-reference={image}~tee-restart-policy=Never~tee-container-log-redirect=true~tee-cmd={cmd}"
        )
    };
    s.create("neighbour", "VTPM", &metadata("[\"wait\"]"));
    s.wait_for("neighbour", "WAITING");
    assert_eq!(swtpms(&data), 1, "the neighbour's vTPM runs");
    // Its processes are counted in a cgroup of its own (cgroup v1 or v2), with a limit.
    let id = s
        .alice(&[
            "compute",
            "instances",
            "describe",
            "neighbour",
            "--project",
            "secundus-bank",
            "--zone",
            "us-west1-b",
            "--format",
            "value(id)",
        ])
        .trim()
        .to_owned();
    let limit = ["/sys/fs/cgroup/pids/cloister", "/sys/fs/cgroup/cloister"]
        .iter()
        .find_map(|root| std::fs::read_to_string(format!("{root}/{id}/pids.max")).ok())
        .unwrap_or_else(|| panic!("no pids cgroup for instance {id}"));
    assert_eq!(limit.trim(), "4096");

    s.create(
        "hostile",
        "VTPM",
        &metadata(&format!("[\"probe\",\"127.0.0.1:{host_port}\"]")),
    );
    let serial = s.finished_serial("hostile");
    assert!(serial.contains("PROBE DONE"), "{serial}");
    // The console went through a pipe: the workload could not rewrite what came before.
    assert!(serial.contains("[launcher] ready in"), "{serial}");
    // Every port of both addresses: only the API and the metadata server answer. The
    // neighbour's swtpm (and this instance's own), its metadata server, the host's services:
    // nothing else is there to reach.
    assert_eq!(
        ports(line(&serial, "OPEN 127.0.0.1")),
        BTreeSet::from([api_port]),
        "{serial}"
    );
    assert_eq!(
        ports(line(&serial, "OPEN 169.254.169.254")),
        BTreeSet::from([80]),
        "{serial}"
    );
    assert!(line(&serial, "FORGE ").starts_with("refused"), "{serial}");
    assert_eq!(
        line(&serial, &format!("DIAL 127.0.0.1:{host_port} ")),
        "refused"
    );
    assert_eq!(line(&serial, "DEV "), "no tpm");
    // Its root is on its own 1 GiB disk (less the filesystem's own blocks): it can fill
    // that, not the host's (the unit test of `compute::disk` fills one).
    let disk: u64 = line(&serial, "DISK ").parse().unwrap();
    assert!(
        (900 << 20..=1 << 30).contains(&disk),
        "{disk} bytes:\n{serial}"
    );
    assert_eq!(line(&serial, "USERNS "), "Operation not permitted");
    assert_eq!(line(&serial, "MOUNT "), "Operation not permitted");
    // Its own metadata server, by GCE's address, answers for this instance only.
    assert_eq!(line(&serial, "META instance/name "), "hostile");
    assert_eq!(
        line(&serial, "META instance/service-accounts/default/email "),
        "workload-sa@secundus-bank.iam.gserviceaccount.com"
    );
    // The hostile instance left RUNNING: its vTPM stopped with it; the neighbour's runs on.
    assert_eq!(swtpms(&data), 1, "only the neighbour's vTPM is left");
    let instances = data.join("instances");
    let mounted = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert_eq!(
        mounted.matches(&instances.display().to_string()).count(),
        3,
        "only the neighbour's two namespaces and its disk are mounted:\n{mounted}"
    );
    let metadata_servers = || {
        std::fs::read_dir(&instances)
            .unwrap()
            .filter(|d| {
                let socket = d.as_ref().unwrap().path().join("metadata.sock");
                std::os::unix::net::UnixStream::connect(socket).is_ok()
            })
            .count()
    };
    assert_eq!(
        metadata_servers(),
        1,
        "only the neighbour's metadata server"
    );
    s.alice(&[
        "compute",
        "instances",
        "delete",
        "neighbour",
        "--project",
        "secundus-bank",
        "--zone",
        "us-west1-b",
    ]);
    assert_eq!(swtpms(&data), 0, "deleting the neighbour stopped its vTPM");
    let mounted = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounted.contains(&instances.display().to_string()));
    drop(host_service);
}

/// Processes of this host whose command line starts with `program`.
fn running(program: &str) -> usize {
    support::instances::processes_running(program)
}

#[test]
fn a_crashed_servers_instances_do_not_outlive_its_restart() {
    let s = Secundus::setup();
    let (image, _) = s.push_program(
        "orphan",
        HOSTILE,
        &[
            "tee.launch_policy.allow_cmd_override=true",
            "tee.launch_policy.log_redirect=always",
        ],
    );
    let data = s.w.dir.path().join("data");
    s.create(
        "orphan",
        "VTPM",
        &format!(
            "^~^tee-image-reference={image}~tee-container-log-redirect=true~tee-cmd=[\"wait\"]"
        ),
    );
    s.wait_for("orphan", "WAITING");
    // The server dies at once, its instance still running.
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &s.w.server.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        running("/usr/local/bin/orphan"),
        1,
        "the crash left it running"
    );
    assert_eq!(swtpms(&data), 1);
    // The next start on the same data directory stops all of it before serving.
    let restarted = support::Server::start(&data);
    assert_eq!(running("/usr/local/bin/orphan"), 0);
    assert_eq!(swtpms(&data), 0);
    let mounted = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounted.contains(&data.display().to_string()), "{mounted}");
    drop(restarted);
}
