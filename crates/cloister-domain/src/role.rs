//! The predefined roles of DESIGN.md §4, each with an explicit permission list in Google's names.
//! Default deny: a permission is held only through a role that lists it.

/// A permission name such as `storage.objects.get`.
pub type Permission = &'static str;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleError {
    #[error(
        "role {0:?} is not supported. Use one of the predefined roles (`cloister iam roles list` shows them), e.g. roles/viewer"
    )]
    Unknown(String),
    #[error(
        "permission {0:?} is not a permission Cloister knows (e.g. resourcemanager.projects.get)"
    )]
    UnknownPermission(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    pub name: &'static str,
    pub title: &'static str,
    pub permissions: &'static [Permission],
}

impl Role {
    pub fn lookup(name: &str) -> Result<&'static Role, RoleError> {
        ROLES
            .iter()
            .find(|r| r.name == name)
            .ok_or_else(|| RoleError::Unknown(name.to_owned()))
    }

    pub fn grants(&self, permission: &str) -> bool {
        self.permissions.contains(&permission)
    }

    pub fn all() -> &'static [Role] {
        ROLES
    }
}

/// Resolves a caller-supplied permission name to the catalog's static name.
pub fn lookup_permission(name: &str) -> Result<Permission, RoleError> {
    ALL_PERMISSIONS
        .iter()
        .copied()
        .find(|p| *p == name)
        .ok_or_else(|| RoleError::UnknownPermission(name.to_owned()))
}

/// Predefined roles whose permission list contains `permission`, for "ask for one of these" hints.
pub fn roles_granting(permission: &str) -> impl Iterator<Item = &'static str> + '_ {
    ROLES
        .iter()
        .filter(move |r| r.grants(permission))
        .map(|r| r.name)
}

/// Every permission Cloister checks, in one place so a role cannot name a permission that no
/// API enforces.
pub const ALL_PERMISSIONS: &[Permission] = &[
    // Resource Manager
    "resourcemanager.projects.get",
    "resourcemanager.projects.update",
    "resourcemanager.projects.delete",
    "resourcemanager.projects.getIamPolicy",
    "resourcemanager.projects.setIamPolicy",
    // IAM: service accounts
    "iam.serviceAccounts.create",
    "iam.serviceAccounts.get",
    "iam.serviceAccounts.list",
    "iam.serviceAccounts.update",
    "iam.serviceAccounts.delete",
    "iam.serviceAccounts.getIamPolicy",
    "iam.serviceAccounts.setIamPolicy",
    "iam.serviceAccounts.actAs",
    "iam.serviceAccounts.getAccessToken",
    "iam.serviceAccounts.getOpenIdToken",
    "iam.serviceAccounts.signJwt",
    // IAM: workload identity federation
    "iam.workloadIdentityPools.create",
    "iam.workloadIdentityPools.get",
    "iam.workloadIdentityPools.list",
    "iam.workloadIdentityPools.update",
    "iam.workloadIdentityPools.delete",
    "iam.workloadIdentityPoolProviders.create",
    "iam.workloadIdentityPoolProviders.get",
    "iam.workloadIdentityPoolProviders.list",
    "iam.workloadIdentityPoolProviders.update",
    "iam.workloadIdentityPoolProviders.delete",
    // Cloud Storage
    "storage.buckets.create",
    "storage.buckets.get",
    "storage.buckets.list",
    "storage.buckets.update",
    "storage.buckets.delete",
    "storage.buckets.getIamPolicy",
    "storage.buckets.setIamPolicy",
    "storage.objects.create",
    "storage.objects.get",
    "storage.objects.list",
    "storage.objects.update",
    "storage.objects.delete",
    // Cloud KMS
    "cloudkms.keyRings.create",
    "cloudkms.keyRings.get",
    "cloudkms.keyRings.list",
    "cloudkms.keyRings.getIamPolicy",
    "cloudkms.keyRings.setIamPolicy",
    "cloudkms.cryptoKeys.create",
    "cloudkms.cryptoKeys.get",
    "cloudkms.cryptoKeys.list",
    "cloudkms.cryptoKeys.update",
    "cloudkms.cryptoKeys.getIamPolicy",
    "cloudkms.cryptoKeys.setIamPolicy",
    "cloudkms.cryptoKeyVersions.create",
    "cloudkms.cryptoKeyVersions.get",
    "cloudkms.cryptoKeyVersions.list",
    "cloudkms.cryptoKeyVersions.update",
    "cloudkms.cryptoKeyVersions.destroy",
    "cloudkms.cryptoKeyVersions.useToEncrypt",
    "cloudkms.cryptoKeyVersions.useToDecrypt",
    // Artifact Registry
    "artifactregistry.repositories.create",
    "artifactregistry.repositories.get",
    "artifactregistry.repositories.list",
    "artifactregistry.repositories.update",
    "artifactregistry.repositories.delete",
    "artifactregistry.repositories.getIamPolicy",
    "artifactregistry.repositories.setIamPolicy",
    "artifactregistry.repositories.downloadArtifacts",
    "artifactregistry.repositories.uploadArtifacts",
    "artifactregistry.repositories.deleteArtifacts",
    "artifactregistry.dockerimages.get",
    "artifactregistry.dockerimages.list",
    "artifactregistry.tags.create",
    "artifactregistry.tags.get",
    "artifactregistry.tags.list",
    "artifactregistry.tags.update",
    "artifactregistry.tags.delete",
    // Compute Engine
    "compute.instances.create",
    "compute.instances.get",
    "compute.instances.list",
    "compute.instances.delete",
    "compute.instances.getSerialPortOutput",
    "compute.instances.setMetadata",
    "compute.instances.setServiceAccount",
    "compute.instances.start",
    "compute.instances.stop",
    // Confidential Computing
    "confidentialcomputing.challenges.create",
    "confidentialcomputing.challenges.verify",
    "confidentialcomputing.locations.get",
    "confidentialcomputing.locations.list",
    // Logging and the audit log
    "logging.logEntries.create",
    "logging.logEntries.list",
    "logging.privateLogEntries.list",
];

const VIEWER: &[Permission] = &[
    "resourcemanager.projects.get",
    "resourcemanager.projects.getIamPolicy",
    "iam.serviceAccounts.get",
    "iam.serviceAccounts.list",
    "iam.serviceAccounts.getIamPolicy",
    "iam.workloadIdentityPools.get",
    "iam.workloadIdentityPools.list",
    "iam.workloadIdentityPoolProviders.get",
    "iam.workloadIdentityPoolProviders.list",
    "storage.buckets.get",
    "storage.buckets.list",
    "cloudkms.keyRings.get",
    "cloudkms.keyRings.list",
    "cloudkms.cryptoKeys.get",
    "cloudkms.cryptoKeys.list",
    "cloudkms.cryptoKeyVersions.get",
    "cloudkms.cryptoKeyVersions.list",
    "artifactregistry.repositories.get",
    "artifactregistry.repositories.list",
    "artifactregistry.dockerimages.get",
    "artifactregistry.dockerimages.list",
    "artifactregistry.tags.get",
    "artifactregistry.tags.list",
    "compute.instances.get",
    "compute.instances.list",
    "confidentialcomputing.locations.get",
    "confidentialcomputing.locations.list",
    "logging.logEntries.list",
];

/// Google's basic Editor: every read and change Cloister checks, but no IAM policy change,
/// no project deletion, no minting of service account tokens and no private logs (those stay
/// with Owner and the token-creator roles). Like Google's, it may use keys to encrypt and
/// decrypt: grant key roles instead where that matters.
const EDITOR: &[Permission] = &[
    "resourcemanager.projects.get",
    "resourcemanager.projects.update",
    "resourcemanager.projects.getIamPolicy",
    "iam.serviceAccounts.create",
    "iam.serviceAccounts.get",
    "iam.serviceAccounts.list",
    "iam.serviceAccounts.update",
    "iam.serviceAccounts.delete",
    "iam.serviceAccounts.getIamPolicy",
    "iam.serviceAccounts.actAs",
    "iam.workloadIdentityPools.create",
    "iam.workloadIdentityPools.get",
    "iam.workloadIdentityPools.list",
    "iam.workloadIdentityPools.update",
    "iam.workloadIdentityPools.delete",
    "iam.workloadIdentityPoolProviders.create",
    "iam.workloadIdentityPoolProviders.get",
    "iam.workloadIdentityPoolProviders.list",
    "iam.workloadIdentityPoolProviders.update",
    "iam.workloadIdentityPoolProviders.delete",
    "storage.buckets.create",
    "storage.buckets.get",
    "storage.buckets.list",
    "storage.buckets.update",
    "storage.buckets.delete",
    "storage.buckets.getIamPolicy",
    "storage.objects.create",
    "storage.objects.get",
    "storage.objects.list",
    "storage.objects.update",
    "storage.objects.delete",
    "cloudkms.keyRings.create",
    "cloudkms.keyRings.get",
    "cloudkms.keyRings.list",
    "cloudkms.keyRings.getIamPolicy",
    "cloudkms.cryptoKeys.create",
    "cloudkms.cryptoKeys.get",
    "cloudkms.cryptoKeys.list",
    "cloudkms.cryptoKeys.update",
    "cloudkms.cryptoKeys.getIamPolicy",
    "cloudkms.cryptoKeyVersions.create",
    "cloudkms.cryptoKeyVersions.get",
    "cloudkms.cryptoKeyVersions.list",
    "cloudkms.cryptoKeyVersions.update",
    "cloudkms.cryptoKeyVersions.destroy",
    "cloudkms.cryptoKeyVersions.useToEncrypt",
    "cloudkms.cryptoKeyVersions.useToDecrypt",
    "artifactregistry.repositories.create",
    "artifactregistry.repositories.get",
    "artifactregistry.repositories.list",
    "artifactregistry.repositories.update",
    "artifactregistry.repositories.delete",
    "artifactregistry.repositories.getIamPolicy",
    "artifactregistry.repositories.downloadArtifacts",
    "artifactregistry.repositories.uploadArtifacts",
    "artifactregistry.repositories.deleteArtifacts",
    "artifactregistry.dockerimages.get",
    "artifactregistry.dockerimages.list",
    "artifactregistry.tags.create",
    "artifactregistry.tags.get",
    "artifactregistry.tags.list",
    "artifactregistry.tags.update",
    "artifactregistry.tags.delete",
    "compute.instances.create",
    "compute.instances.get",
    "compute.instances.list",
    "compute.instances.delete",
    "compute.instances.getSerialPortOutput",
    "compute.instances.setMetadata",
    "compute.instances.setServiceAccount",
    "compute.instances.start",
    "compute.instances.stop",
    "confidentialcomputing.challenges.create",
    "confidentialcomputing.challenges.verify",
    "confidentialcomputing.locations.get",
    "confidentialcomputing.locations.list",
    "logging.logEntries.create",
    "logging.logEntries.list",
];

const ARTIFACT_READER: &[Permission] = &[
    "artifactregistry.repositories.get",
    "artifactregistry.repositories.list",
    "artifactregistry.repositories.downloadArtifacts",
    "artifactregistry.dockerimages.get",
    "artifactregistry.dockerimages.list",
    "artifactregistry.tags.get",
    "artifactregistry.tags.list",
];

const ARTIFACT_WRITER: &[Permission] = &[
    "artifactregistry.repositories.get",
    "artifactregistry.repositories.list",
    "artifactregistry.repositories.downloadArtifacts",
    "artifactregistry.repositories.uploadArtifacts",
    "artifactregistry.dockerimages.get",
    "artifactregistry.dockerimages.list",
    "artifactregistry.tags.create",
    "artifactregistry.tags.get",
    "artifactregistry.tags.list",
    "artifactregistry.tags.update",
];

static ROLES: &[Role] = &[
    Role {
        name: "roles/owner",
        title: "Owner",
        permissions: ALL_PERMISSIONS,
    },
    Role {
        name: "roles/viewer",
        title: "Viewer",
        permissions: VIEWER,
    },
    Role {
        name: "roles/storage.admin",
        title: "Storage Admin",
        permissions: &[
            "storage.buckets.create",
            "storage.buckets.get",
            "storage.buckets.list",
            "storage.buckets.update",
            "storage.buckets.delete",
            "storage.buckets.getIamPolicy",
            "storage.buckets.setIamPolicy",
            "storage.objects.create",
            "storage.objects.get",
            "storage.objects.list",
            "storage.objects.update",
            "storage.objects.delete",
        ],
    },
    Role {
        name: "roles/storage.objectViewer",
        title: "Storage Object Viewer",
        permissions: &["storage.objects.get", "storage.objects.list"],
    },
    Role {
        name: "roles/storage.objectCreator",
        title: "Storage Object Creator",
        permissions: &["storage.objects.create"],
    },
    Role {
        name: "roles/storage.objectUser",
        title: "Storage Object User",
        permissions: &[
            "storage.objects.create",
            "storage.objects.get",
            "storage.objects.list",
            "storage.objects.update",
            "storage.objects.delete",
        ],
    },
    Role {
        name: "roles/storage.objectAdmin",
        title: "Storage Object Admin",
        permissions: &[
            "storage.buckets.get",
            "storage.objects.create",
            "storage.objects.get",
            "storage.objects.list",
            "storage.objects.update",
            "storage.objects.delete",
        ],
    },
    Role {
        name: "roles/storage.bucketViewer",
        title: "Storage Bucket Viewer",
        permissions: &["storage.buckets.get", "storage.buckets.list"],
    },
    // The legacy bucket and object roles: gsutil-era grants that codelabs still use, e.g.
    // legacyBucketReader so a workload may list (but not read) a bucket's objects.
    Role {
        name: "roles/storage.legacyBucketReader",
        title: "Storage Legacy Bucket Reader",
        permissions: &["storage.buckets.get", "storage.objects.list"],
    },
    Role {
        name: "roles/storage.legacyBucketWriter",
        title: "Storage Legacy Bucket Writer",
        permissions: &[
            "storage.buckets.get",
            "storage.objects.create",
            "storage.objects.delete",
            "storage.objects.list",
        ],
    },
    Role {
        name: "roles/storage.legacyBucketOwner",
        title: "Storage Legacy Bucket Owner",
        permissions: &[
            "storage.buckets.get",
            "storage.buckets.update",
            "storage.buckets.getIamPolicy",
            "storage.buckets.setIamPolicy",
            "storage.objects.create",
            "storage.objects.delete",
            "storage.objects.list",
        ],
    },
    Role {
        name: "roles/storage.legacyObjectReader",
        title: "Storage Legacy Object Reader",
        permissions: &["storage.objects.get"],
    },
    Role {
        name: "roles/storage.legacyObjectOwner",
        title: "Storage Legacy Object Owner",
        permissions: &["storage.objects.get", "storage.objects.update"],
    },
    Role {
        name: "roles/resourcemanager.projectIamAdmin",
        title: "Project IAM Admin",
        permissions: &[
            "resourcemanager.projects.get",
            "resourcemanager.projects.getIamPolicy",
            "resourcemanager.projects.setIamPolicy",
        ],
    },
    Role {
        name: "roles/iam.serviceAccountAdmin",
        title: "Service Account Admin",
        permissions: &[
            "iam.serviceAccounts.create",
            "iam.serviceAccounts.get",
            "iam.serviceAccounts.list",
            "iam.serviceAccounts.update",
            "iam.serviceAccounts.delete",
            "iam.serviceAccounts.getIamPolicy",
            "iam.serviceAccounts.setIamPolicy",
        ],
    },
    Role {
        name: "roles/iam.serviceAccountUser",
        title: "Service Account User",
        permissions: &[
            "iam.serviceAccounts.actAs",
            "iam.serviceAccounts.get",
            "iam.serviceAccounts.list",
        ],
    },
    Role {
        name: "roles/iam.serviceAccountTokenCreator",
        title: "Service Account Token Creator",
        permissions: &[
            "iam.serviceAccounts.get",
            "iam.serviceAccounts.getAccessToken",
            "iam.serviceAccounts.getOpenIdToken",
            "iam.serviceAccounts.signJwt",
        ],
    },
    Role {
        name: "roles/iam.serviceAccountOpenIdTokenCreator",
        title: "Service Account OpenID Connect Identity Token Creator",
        permissions: &["iam.serviceAccounts.getOpenIdToken"],
    },
    Role {
        name: "roles/iam.workloadIdentityUser",
        title: "Workload Identity User",
        permissions: &[
            "iam.serviceAccounts.get",
            "iam.serviceAccounts.getAccessToken",
            "iam.serviceAccounts.getOpenIdToken",
            "iam.serviceAccounts.list",
        ],
    },
    Role {
        name: "roles/iam.workloadIdentityPoolAdmin",
        title: "IAM Workload Identity Pool Admin",
        permissions: &[
            "iam.workloadIdentityPools.create",
            "iam.workloadIdentityPools.get",
            "iam.workloadIdentityPools.list",
            "iam.workloadIdentityPools.update",
            "iam.workloadIdentityPools.delete",
            "iam.workloadIdentityPoolProviders.create",
            "iam.workloadIdentityPoolProviders.get",
            "iam.workloadIdentityPoolProviders.list",
            "iam.workloadIdentityPoolProviders.update",
            "iam.workloadIdentityPoolProviders.delete",
        ],
    },
    Role {
        name: "roles/iam.workloadIdentityPoolViewer",
        title: "IAM Workload Identity Pool Viewer",
        permissions: &[
            "iam.workloadIdentityPools.get",
            "iam.workloadIdentityPools.list",
            "iam.workloadIdentityPoolProviders.get",
            "iam.workloadIdentityPoolProviders.list",
        ],
    },
    Role {
        name: "roles/cloudkms.viewer",
        title: "Cloud KMS Viewer",
        permissions: &[
            "cloudkms.keyRings.get",
            "cloudkms.keyRings.list",
            "cloudkms.cryptoKeys.get",
            "cloudkms.cryptoKeys.list",
            "cloudkms.cryptoKeyVersions.get",
            "cloudkms.cryptoKeyVersions.list",
        ],
    },
    Role {
        name: "roles/cloudkms.admin",
        title: "Cloud KMS Admin",
        permissions: &[
            "cloudkms.keyRings.create",
            "cloudkms.keyRings.get",
            "cloudkms.keyRings.list",
            "cloudkms.keyRings.getIamPolicy",
            "cloudkms.keyRings.setIamPolicy",
            "cloudkms.cryptoKeys.create",
            "cloudkms.cryptoKeys.get",
            "cloudkms.cryptoKeys.list",
            "cloudkms.cryptoKeys.update",
            "cloudkms.cryptoKeys.getIamPolicy",
            "cloudkms.cryptoKeys.setIamPolicy",
            "cloudkms.cryptoKeyVersions.create",
            "cloudkms.cryptoKeyVersions.get",
            "cloudkms.cryptoKeyVersions.list",
            "cloudkms.cryptoKeyVersions.update",
            "cloudkms.cryptoKeyVersions.destroy",
        ],
    },
    Role {
        name: "roles/cloudkms.cryptoKeyEncrypter",
        title: "Cloud KMS CryptoKey Encrypter",
        permissions: &["cloudkms.cryptoKeyVersions.useToEncrypt"],
    },
    Role {
        name: "roles/cloudkms.cryptoKeyDecrypter",
        title: "Cloud KMS CryptoKey Decrypter",
        permissions: &["cloudkms.cryptoKeyVersions.useToDecrypt"],
    },
    Role {
        name: "roles/cloudkms.cryptoKeyEncrypterDecrypter",
        title: "Cloud KMS CryptoKey Encrypter/Decrypter",
        permissions: &[
            "cloudkms.cryptoKeyVersions.useToEncrypt",
            "cloudkms.cryptoKeyVersions.useToDecrypt",
        ],
    },
    Role {
        name: "roles/artifactregistry.reader",
        title: "Artifact Registry Reader",
        permissions: ARTIFACT_READER,
    },
    Role {
        name: "roles/artifactregistry.writer",
        title: "Artifact Registry Writer",
        permissions: ARTIFACT_WRITER,
    },
    Role {
        name: "roles/artifactregistry.admin",
        title: "Artifact Registry Administrator",
        permissions: &[
            "artifactregistry.repositories.create",
            "artifactregistry.repositories.get",
            "artifactregistry.repositories.list",
            "artifactregistry.repositories.update",
            "artifactregistry.repositories.delete",
            "artifactregistry.repositories.getIamPolicy",
            "artifactregistry.repositories.setIamPolicy",
            "artifactregistry.repositories.downloadArtifacts",
            "artifactregistry.repositories.uploadArtifacts",
            "artifactregistry.repositories.deleteArtifacts",
            "artifactregistry.dockerimages.get",
            "artifactregistry.dockerimages.list",
            "artifactregistry.tags.create",
            "artifactregistry.tags.get",
            "artifactregistry.tags.list",
            "artifactregistry.tags.update",
            "artifactregistry.tags.delete",
        ],
    },
    Role {
        name: "roles/artifactregistry.repoAdmin",
        title: "Artifact Registry Repository Administrator",
        permissions: &[
            "artifactregistry.repositories.get",
            "artifactregistry.repositories.list",
            "artifactregistry.repositories.downloadArtifacts",
            "artifactregistry.repositories.uploadArtifacts",
            "artifactregistry.repositories.deleteArtifacts",
            "artifactregistry.dockerimages.get",
            "artifactregistry.dockerimages.list",
            "artifactregistry.tags.create",
            "artifactregistry.tags.get",
            "artifactregistry.tags.list",
            "artifactregistry.tags.update",
            "artifactregistry.tags.delete",
        ],
    },
    Role {
        name: "roles/compute.viewer",
        title: "Compute Viewer",
        permissions: &["compute.instances.get", "compute.instances.list"],
    },
    Role {
        name: "roles/compute.instanceAdmin.v1",
        title: "Compute Instance Admin (v1)",
        permissions: &[
            "compute.instances.create",
            "compute.instances.get",
            "compute.instances.list",
            "compute.instances.delete",
            "compute.instances.getSerialPortOutput",
            "compute.instances.setMetadata",
            "compute.instances.setServiceAccount",
            "compute.instances.start",
            "compute.instances.stop",
            "iam.serviceAccounts.actAs",
        ],
    },
    Role {
        name: "roles/compute.admin",
        title: "Compute Admin",
        permissions: &[
            "compute.instances.create",
            "compute.instances.get",
            "compute.instances.list",
            "compute.instances.delete",
            "compute.instances.getSerialPortOutput",
            "compute.instances.setMetadata",
            "compute.instances.setServiceAccount",
            "compute.instances.start",
            "compute.instances.stop",
        ],
    },
    Role {
        name: "roles/confidentialcomputing.workloadUser",
        title: "Confidential Computing Workload User",
        permissions: &[
            "confidentialcomputing.challenges.create",
            "confidentialcomputing.challenges.verify",
            "confidentialcomputing.locations.get",
            "confidentialcomputing.locations.list",
        ],
    },
    Role {
        name: "roles/logging.logWriter",
        title: "Logs Writer",
        permissions: &["logging.logEntries.create"],
    },
    Role {
        name: "roles/logging.viewer",
        title: "Logs Viewer",
        permissions: &["logging.logEntries.list"],
    },
    Role {
        name: "roles/logging.privateLogViewer",
        title: "Private Logs Viewer",
        permissions: &["logging.logEntries.list", "logging.privateLogEntries.list"],
    },
    // Last: a refusal suggests the first role that grants the permission, and the narrow
    // roles above are the better suggestion.
    Role {
        name: "roles/editor",
        title: "Editor",
        permissions: EDITOR,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_of_the_design_exists_and_lists_only_known_permissions() {
        let design = [
            "roles/owner",
            "roles/editor",
            "roles/viewer",
            "roles/storage.admin",
            "roles/storage.objectViewer",
            "roles/storage.objectCreator",
            "roles/storage.objectUser",
            "roles/storage.objectAdmin",
            "roles/storage.bucketViewer",
            "roles/storage.legacyBucketReader",
            "roles/storage.legacyBucketWriter",
            "roles/storage.legacyBucketOwner",
            "roles/storage.legacyObjectReader",
            "roles/storage.legacyObjectOwner",
            "roles/resourcemanager.projectIamAdmin",
            "roles/iam.serviceAccountAdmin",
            "roles/iam.serviceAccountUser",
            "roles/iam.serviceAccountTokenCreator",
            "roles/iam.serviceAccountOpenIdTokenCreator",
            "roles/iam.workloadIdentityUser",
            "roles/iam.workloadIdentityPoolAdmin",
            "roles/iam.workloadIdentityPoolViewer",
            "roles/cloudkms.viewer",
            "roles/cloudkms.admin",
            "roles/cloudkms.cryptoKeyEncrypter",
            "roles/cloudkms.cryptoKeyDecrypter",
            "roles/cloudkms.cryptoKeyEncrypterDecrypter",
            "roles/artifactregistry.reader",
            "roles/artifactregistry.writer",
            "roles/artifactregistry.admin",
            "roles/artifactregistry.repoAdmin",
            "roles/compute.viewer",
            "roles/compute.instanceAdmin.v1",
            "roles/compute.admin",
            "roles/confidentialcomputing.workloadUser",
            "roles/logging.logWriter",
            "roles/logging.viewer",
            "roles/logging.privateLogViewer",
        ];
        for name in design {
            let role = Role::lookup(name).unwrap();
            assert!(!role.permissions.is_empty(), "{name}");
            for p in role.permissions {
                assert!(
                    ALL_PERMISSIONS.contains(p),
                    "{name} lists unknown permission {p}"
                );
            }
        }
        assert_eq!(Role::all().len(), design.len());
    }

    #[test]
    fn roles_grant_what_the_codelab_relies_on_and_nothing_more() {
        let grants = |r: &str, p: &str| Role::lookup(r).unwrap().grants(p);
        assert!(grants("roles/viewer", "resourcemanager.projects.get"));
        assert!(!grants(
            "roles/viewer",
            "resourcemanager.projects.setIamPolicy"
        ));
        assert!(
            !grants("roles/viewer", "storage.objects.get"),
            "viewer does not read data"
        );
        assert!(grants("roles/storage.objectViewer", "storage.objects.get"));
        assert!(!grants(
            "roles/storage.objectViewer",
            "storage.objects.create"
        ));
        assert!(grants("roles/storage.objectUser", "storage.objects.delete"));
        assert!(grants(
            "roles/iam.workloadIdentityUser",
            "iam.serviceAccounts.getAccessToken"
        ));
        assert!(!grants(
            "roles/iam.workloadIdentityUser",
            "iam.serviceAccounts.actAs"
        ));
        assert!(grants(
            "roles/confidentialcomputing.workloadUser",
            "confidentialcomputing.challenges.verify"
        ));
        assert!(!grants(
            "roles/cloudkms.admin",
            "cloudkms.cryptoKeyVersions.useToDecrypt"
        ));
        assert!(!grants(
            "roles/artifactregistry.reader",
            "artifactregistry.repositories.uploadArtifacts"
        ));
        // The codelab's grants: legacyBucketReader lists a bucket but reads no object;
        // editor changes resources but never who may use them.
        assert!(grants(
            "roles/storage.legacyBucketReader",
            "storage.objects.list"
        ));
        assert!(!grants(
            "roles/storage.legacyBucketReader",
            "storage.objects.get"
        ));
        assert!(grants("roles/editor", "storage.objects.create"));
        assert!(grants("roles/editor", "compute.instances.create"));
        for p in ALL_PERMISSIONS
            .iter()
            .filter(|p| p.ends_with(".setIamPolicy"))
        {
            assert!(!grants("roles/editor", p), "editor must not hold {p}");
        }
        for p in [
            "resourcemanager.projects.delete",
            "iam.serviceAccounts.getAccessToken",
            "logging.privateLogEntries.list",
        ] {
            assert!(!grants("roles/editor", p), "editor must not hold {p}");
        }
    }

    #[test]
    fn unknown_roles_and_permissions_are_refused() {
        assert!(
            Role::lookup("roles/superuser")
                .unwrap_err()
                .to_string()
                .contains("roles/superuser")
        );
        assert!(Role::lookup("owner").is_err());
        assert!(lookup_permission("storage.objects.get").is_ok());
        assert!(lookup_permission("storage.objects.steal").is_err());
        let hint: Vec<_> = roles_granting("resourcemanager.projects.get").collect();
        assert_eq!(
            hint,
            [
                "roles/owner",
                "roles/viewer",
                "roles/resourcemanager.projectIamAdmin",
                "roles/editor"
            ]
        );
    }
}
