//! An instance's metadata laid out as GCE's metadata server lays it out: directories of named
//! entries, rendered three ways, as Google's clients read them:
//! - a directory's listing: one entry a line, directories with a trailing `/`;
//! - `?recursive=true`: the whole subtree as JSON, GCE's own names in camelCase
//!   (`numericProjectId`, `serviceAccounts`) and user keys (attribute names, account emails)
//!   as they are; `&alt=text` gives `relative/path value` lines with the path names instead;
//! - a leaf: its text, or with `?alt=json` its JSON value (a number for ids, an array for
//!   scopes and aliases).
//!
//! Access and ID tokens are computed per request, so they are [`Node::Dynamic`]: listed in
//! their directory like GCE lists them, left out of recursive answers as GCE leaves them out.

use serde_json::{Map, Value, json};

use super::metadata_server::InstanceInfo;

/// The only scope a Cloister token has: every API the account's IAM grants allow.
pub const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

pub enum Node {
    Dir(Vec<Entry>),
    /// A directory of numbered entries (`network-interfaces/0/`): listed as `0/`, `1/`, …,
    /// an array in JSON, as GCE answers `?recursive=true`.
    Indexed(Vec<Node>),
    Text(String),
    Number(u64),
    /// One value a line in text, an array in JSON (`scopes`, `aliases`).
    Lines(Vec<String>),
    /// A JSON value that GCE answers as JSON even in text (`tags`: `["a","b"]`).
    Json(Value),
    Dynamic(Dynamic),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dynamic {
    Token,
    Identity,
}

pub struct Entry {
    name: String,
    json_name: String,
    node: Node,
}

impl Entry {
    /// One of GCE's own entries: `numeric-project-id` is `numericProjectId` in JSON.
    fn fixed(name: &str, node: Node) -> Entry {
        let mut json_name = String::new();
        let mut upper = false;
        for c in name.chars() {
            match c {
                '-' => upper = true,
                c if upper => {
                    json_name.extend(c.to_uppercase());
                    upper = false;
                }
                c => json_name.push(c),
            }
        }
        Entry {
            name: name.to_owned(),
            json_name,
            node,
        }
    }

    /// A user's key (an attribute, an account's email): the same name in JSON.
    fn keyed(name: &str, node: Node) -> Entry {
        Entry {
            name: name.to_owned(),
            json_name: name.to_owned(),
            node,
        }
    }
}

/// A directory of GCE's own above the instance's tree (`computeMetadata/`, `v1/`).
pub fn dir_entry(name: &str, node: Node) -> Entry {
    Entry::fixed(name, node)
}

/// `service-accounts/default/` and `service-accounts/EMAIL/`: the same account under both
/// names, as on GCE (its aliases say which names it has).
fn account(email: &str) -> Node {
    Node::Dir(vec![
        Entry::fixed("aliases", Node::Lines(vec!["default".into()])),
        Entry::fixed("email", Node::Text(email.to_owned())),
        Entry::fixed("identity", Node::Dynamic(Dynamic::Identity)),
        Entry::fixed("scopes", Node::Lines(vec![CLOUD_PLATFORM.into()])),
        Entry::fixed("token", Node::Dynamic(Dynamic::Token)),
    ])
}

/// The machine type of every instance the local driver runs.
pub const LOCAL_MACHINE_TYPE: &str = "cloister-local";

/// `network-interfaces/`: the sandbox's one interface as the workload sees it, its loopback
/// (no other interface exists in its namespace). No access configs: it has no external
/// address, and GCE lists none for such an interface. No gateway or DNS server either, so
/// neither is listed.
fn network_interfaces(project_number: u64) -> Node {
    Node::Indexed(vec![Node::Dir(vec![
        Entry::fixed("access-configs", Node::Indexed(Vec::new())),
        Entry::fixed("ip", Node::Text("127.0.0.1".into())),
        Entry::fixed("mac", Node::Text("00:00:00:00:00:00".into())),
        Entry::fixed("mtu", Node::Number(65536)),
        Entry::fixed(
            "network",
            Node::Text(format!(
                "projects/{project_number}/networks/{SANDBOX_NETWORK}"
            )),
        ),
        Entry::fixed("subnetmask", Node::Text("255.0.0.0".into())),
    ])])
}

/// The network an instance's interface belongs to: its own sandbox, shared with no other.
pub const SANDBOX_NETWORK: &str = "cloister-sandbox";

/// Everything under `/computeMetadata/v1/` for one instance.
pub fn tree(i: &InstanceInfo) -> Node {
    let email = i.service_account.as_str();
    let attributes = i
        .attributes
        .iter()
        .map(|(k, v)| Entry::keyed(k, Node::Text(v.clone())))
        .collect();
    let instance = Node::Dir(vec![
        Entry::fixed("attributes", Node::Dir(attributes)),
        // GCE's zonal DNS name; the container's own hostname is the short name.
        Entry::fixed(
            "hostname",
            Node::Text(format!("{}.{}.c.{}.internal", i.name, i.zone, i.project_id)),
        ),
        Entry::fixed("id", Node::Number(i.id)),
        // The local driver runs every instance in a sandbox on the server's host, not on a
        // sized VM: its machine type names that.
        Entry::fixed(
            "machine-type",
            Node::Text(format!(
                "projects/{}/machineTypes/{LOCAL_MACHINE_TYPE}",
                i.project_number
            )),
        ),
        Entry::fixed("name", Node::Text(i.name.clone())),
        Entry::fixed("network-interfaces", network_interfaces(i.project_number)),
        Entry::fixed(
            "service-accounts",
            Node::Dir(vec![
                Entry::keyed("default", account(email)),
                Entry::keyed(email, account(email)),
            ]),
        ),
        // Cloister's instances carry no network tags.
        Entry::fixed("tags", Node::Json(json!([]))),
        Entry::fixed(
            "zone",
            Node::Text(format!("projects/{}/zones/{}", i.project_number, i.zone)),
        ),
    ]);
    let project = Node::Dir(vec![
        // Cloister has no project-wide metadata: the directory is there, empty.
        Entry::fixed("attributes", Node::Dir(Vec::new())),
        Entry::fixed("numeric-project-id", Node::Number(i.project_number)),
        Entry::fixed("project-id", Node::Text(i.project_id.clone())),
    ]);
    // Google's clients check that their credentials' universe is the one they call.
    let universe = Node::Dir(vec![Entry::fixed(
        "universe-domain",
        Node::Text("googleapis.com".into()),
    )]);
    Node::Dir(vec![
        Entry::fixed("instance", instance),
        Entry::fixed("project", project),
        Entry::fixed("universe", universe),
    ])
}

impl Node {
    /// A directory (named or numbered entries), answered at its slashed URL.
    pub fn is_dir(&self) -> bool {
        matches!(self, Node::Dir(_) | Node::Indexed(_))
    }

    /// The node at `segments` below this one.
    pub fn lookup(&self, segments: &[&str]) -> Option<&Node> {
        let Some((first, rest)) = segments.split_first() else {
            return Some(self);
        };
        match self {
            Node::Dir(entries) => entries.iter().find(|e| e.name == *first)?.node.lookup(rest),
            // Only the index as GCE spells it: `0`, never `00` or `+0`.
            Node::Indexed(items) => {
                let i: usize = first.parse().ok()?;
                (i.to_string() == *first).then_some(())?;
                items.get(i)?.lookup(rest)
            }
            _ => None,
        }
    }

    /// A directory's entry names, directories with a trailing `/`.
    pub fn names(&self) -> Vec<String> {
        let name = |name: String, node: &Node| match node.is_dir() {
            true => format!("{name}/"),
            false => name,
        };
        match self {
            Node::Dir(entries) => entries
                .iter()
                .map(|e| name(e.name.clone(), &e.node))
                .collect(),
            Node::Indexed(items) => items
                .iter()
                .enumerate()
                .map(|(i, n)| name(i.to_string(), n))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The JSON form (`?recursive=true` for a directory, `?alt=json` for a leaf).
    pub fn json(&self) -> Value {
        match self {
            Node::Dir(entries) => Value::Object(
                entries
                    .iter()
                    .filter(|e| !matches!(e.node, Node::Dynamic(_)))
                    .map(|e| (e.json_name.clone(), e.node.json()))
                    .collect::<Map<_, _>>(),
            ),
            Node::Indexed(items) => items.iter().map(Node::json).collect(),
            Node::Text(t) => json!(t),
            Node::Number(n) => json!(n),
            Node::Lines(l) => json!(l),
            Node::Json(v) => v.clone(),
            Node::Dynamic(_) => Value::Null,
        }
    }

    /// A leaf's text form: values one a line for lists, as GCE answers `…/scopes`.
    pub fn text(&self) -> String {
        match self {
            Node::Text(t) => t.clone(),
            Node::Number(n) => n.to_string(),
            Node::Lines(l) => l.iter().map(|v| format!("{v}\n")).collect(),
            Node::Json(v) => v.to_string(),
            Node::Dir(_) | Node::Indexed(_) | Node::Dynamic(_) => String::new(),
        }
    }

    /// `?recursive=true&alt=text`: a `path value` line per leaf value below this directory,
    /// the path relative to it.
    pub fn recursive_text(&self) -> String {
        let mut out = String::new();
        self.text_lines("", &mut out);
        out
    }

    fn text_lines(&self, prefix: &str, out: &mut String) {
        match self {
            Node::Dir(entries) => {
                for e in entries {
                    let path = if prefix.is_empty() {
                        e.name.clone()
                    } else {
                        format!("{prefix}/{}", e.name)
                    };
                    e.node.text_lines(&path, out);
                }
            }
            Node::Indexed(items) => {
                for (i, node) in items.iter().enumerate() {
                    let path = if prefix.is_empty() {
                        i.to_string()
                    } else {
                        format!("{prefix}/{i}")
                    };
                    node.text_lines(&path, out);
                }
            }
            Node::Lines(values) => {
                for v in values {
                    out.push_str(&format!("{prefix} {v}\n"));
                }
            }
            Node::Text(_) | Node::Number(_) | Node::Json(_) => {
                out.push_str(&format!("{prefix} {}\n", self.text()));
            }
            Node::Dynamic(_) => {}
        }
    }
}
