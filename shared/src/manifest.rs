//! The manifest of a model version: the list of files under `models/<model>/<version>/`
//! (path, size, SHA-256) and how to serve them, written as `manifest.json` after every file.
//!
//! The manifest's arrival is the commit signal of an upload, so everything downstream
//! (replica verification, the rollout) trusts what is checked here: names usable in S3 keys
//! and registry keys, paths confined to the version folder, sizes and digests that can be
//! verified, and a serving spec SageMaker accepts. Every problem is reported at once, each
//! named by its JSON path (`files[3].path`), so a broken manifest is fixed in one pass.
//! The format is described for users in `docs/manifest.md`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::de::{Error as _, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

use crate::smoke::SmokeTest;

/// One validation problem, named by its JSON path (e.g. `files[3].path`); the same type as
/// the fleet file's problems, so tools print both alike.
pub use crate::field_error::FieldError;

/// Name of the manifest object inside a version folder; reserved, so no listed file may
/// use it.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Largest manifest accepted, checked before parsing so a huge object costs nothing: above
/// the largest the other limits allow (10,000 files of 900-byte paths, about 11 MB).
pub const MAX_MANIFEST_BYTES: usize = 16 * 1024 * 1024;
/// Largest file a manifest may list: 5 TiB, S3's object size limit.
pub const MAX_FILE_BYTES: u64 = 5 * 1024u64.pow(4);
/// Most files one version may have; keeps verification and copying bounded.
pub const MAX_FILES: usize = 10_000;
/// The manifest format this code reads and writes (`"format"`).
pub const FORMAT: u64 = 1;
/// Longest file path, in bytes, so that `models/<model>/<version>/<path>` (at most 122
/// bytes of prefix) stays within S3's 1024-byte key limit.
pub const MAX_PATH_BYTES: usize = 900;
/// Most instances a serving spec may ask for.
pub const MAX_INSTANCE_COUNT: u32 = 100;
/// Most container environment variables (SageMaker's limit).
pub const MAX_ENVIRONMENT_ENTRIES: usize = 100;
/// Longest environment variable name or value, in characters (SageMaker's limit).
pub const MAX_ENVIRONMENT_CHARS: usize = 1024;
/// Longest container image URI, in characters (SageMaker's limit).
pub use crate::images::MAX_IMAGE_CHARS;

/// Top-level folder of all model versions in the upload bucket.
const MODELS_FOLDER: &str = "models";
/// Files are hashed in chunks of this size, never read whole into memory.
const READ_CHUNK: usize = 1024 * 1024;

/// A validated manifest. Obtain one from [`parse`], [`describe_dir`] or by deserializing
/// (which runs the same validation), so its invariants hold; its `files` are then sorted by
/// path and unique.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawManifest")]
pub struct Manifest {
    /// Always [`FORMAT`]; a later format is rejected rather than half-understood.
    pub format: u64,
    /// Model name: `[a-z0-9][a-z0-9-]{0,62}`.
    pub model: String,
    /// Version name: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}` without `..`.
    pub version: String,
    /// Every file of the version, besides the manifest itself.
    pub files: Vec<FileEntry>,
    /// How SageMaker serves the version.
    pub serving: Serving,
}

/// One file of a version, as replicas are verified against it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Path relative to the version folder, `/`-separated.
    pub path: String,
    /// Size in bytes: 1..=[`MAX_FILE_BYTES`].
    pub size: u64,
    /// SHA-256 of the content, 64 lowercase hex digits.
    pub sha256: String,
    /// S3's full-object CRC64NVME of the content, base64 as S3 reports it; optional (older
    /// manifests have none). With it, a replica whose `HeadObject` reports the same
    /// full-object CRC64NVME is verified without reading it (`docs/manifest.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc64nvme: Option<String>,
}

/// How the version is served: the parts of a SageMaker model and endpoint config that
/// belong to the model rather than to the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Serving {
    /// Container image URI: a private ECR image, e.g. of a TGI container. A region
    /// without an `images` entry runs it from its own region ([`crate::images`]).
    pub image: String,
    /// Optional, per region: the image that region runs instead, in that region (an
    /// AWS image served from another account there, or a repository named differently).
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "unique_map"
    )]
    pub images: BTreeMap<String, String>,
    /// SageMaker instance type, e.g. `ml.g5.2xlarge`.
    pub instance_type: String,
    /// Instances per region: 1..=[`MAX_INSTANCE_COUNT`].
    pub instance_count: u32,
    /// Deprecated, optional: the fleet file names the variant ([`crate::variant`]). Still
    /// checked against SageMaker's pattern when present, and a rollout refuses a version
    /// that names another variant than the fleet's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant_name: Option<String>,
    /// Container environment; optional in the file. A `BTreeMap` so the canonical form
    /// (and so [`Manifest::canonical_digest`]) does not depend on the order written.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "unique_map"
    )]
    pub environment: BTreeMap<String, String>,
    /// The request each region's endpoint must answer before the version commits; optional
    /// in the file (the default suits TGI: [`SmokeTest::default`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smoke_test: Option<SmokeTest>,
}

/// Why a manifest was rejected, or could not be built from a directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The manifest object is larger than [`MAX_MANIFEST_BYTES`]; it was not parsed.
    #[error("manifest is too large: {size} bytes, more than the limit of {max} bytes")]
    TooLarge {
        /// Size of the object, in bytes.
        size: usize,
        /// The limit, [`MAX_MANIFEST_BYTES`].
        max: usize,
    },
    /// Not JSON of the manifest's shape: a syntax error, a wrong type, a missing or unknown
    /// field. serde's message names the field, the line and the column.
    #[error("manifest is not valid manifest JSON: {0}")]
    Syntax(String),
    /// The JSON has the right shape but breaks one or more rules; all are listed.
    #[error("invalid manifest:{}", display_problems(.0))]
    Invalid(Vec<FieldError>),
    /// The manifest was found at a key other than its own
    /// `models/<model>/<version>/manifest.json`.
    #[error(
        "manifest for model {model:?} version {version:?} must be stored at {:?}, not at {key:?}",
        manifest_key(model, version)
    )]
    KeyMismatch {
        /// Where the manifest was found.
        key: String,
        /// The model the manifest names.
        model: String,
        /// The version the manifest names.
        version: String,
    },
    /// A local file or folder could not be read while describing a directory.
    #[error("cannot describe {}: {message}", path.display())]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

impl ManifestError {
    /// Whether retrying cannot help: the uploaded manifest itself is wrong, so the upload is
    /// rejected and reported to its owner instead of retried. Only a local read error
    /// ([`ManifestError::Io`], from [`describe_dir`]) may be transient.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, ManifestError::Io { .. })
    }

    /// The individual validation problems (empty for the other kinds of error).
    pub fn problems(&self) -> &[FieldError] {
        match self {
            ManifestError::Invalid(problems) => problems,
            _ => &[],
        }
    }
}

fn display_problems(problems: &[FieldError]) -> String {
    problems.iter().map(|p| format!("\n  {p}")).collect()
}

/// Parses and validates a manifest from the bytes of a `manifest.json` object.
pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge {
            size: bytes.len(),
            max: MAX_MANIFEST_BYTES,
        });
    }
    let raw: RawManifest =
        serde_json::from_slice(bytes).map_err(|e| ManifestError::Syntax(e.to_string()))?;
    Manifest::try_from(raw)
}

/// The S3 prefix (folder) of a version, `models/<model>/<version>/`. The names must obey
/// the rules ([`check_model_name`], [`check_version_name`]) for the prefix to be safe.
pub fn version_prefix(model: &str, version: &str) -> String {
    format!("{MODELS_FOLDER}/{model}/{version}/")
}

/// The S3 key of a version's manifest, `models/<model>/<version>/manifest.json`.
pub fn manifest_key(model: &str, version: &str) -> String {
    format!("{}{MANIFEST_FILE}", version_prefix(model, version))
}

/// The model and version of a manifest key `models/<model>/<version>/manifest.json`
/// (exactly that depth), or `None` for any other key, which is not a commit signal. Pass
/// the key decoded (S3 event notifications URL-encode it).
///
/// The names are not checked against the naming rules here, so that a mis-named upload is
/// read and rejected with a reason instead of ignored: [`Manifest::check_key`], after
/// [`parse`], accepts only names equal to the manifest's, which are valid.
pub fn parse_manifest_key(key: &str) -> Option<(String, String)> {
    let mut parts = key.split('/');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some(MODELS_FOLDER), Some(model), Some(version), Some(MANIFEST_FILE), None)
            if !model.is_empty() && !version.is_empty() =>
        {
            Some((model.to_string(), version.to_string()))
        }
        _ => None,
    }
}

/// Checks a model name: 1 to 63 of `a-z`, `0-9` and `-`, starting with a letter or digit,
/// so it fits S3 keys, registry keys and SageMaker resource names. Returns the problem.
pub fn check_model_name(name: &str) -> Result<(), String> {
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} is not a valid model name: 1 to 63 of a-z, 0-9 and '-', starting with a \
             letter or digit",
            quoted(name)
        ))
    }
}

/// Checks a version name: 1 to 64 of `A-Z`, `a-z`, `0-9`, `.`, `_` and `-`, starting with a
/// letter or digit, without `..`, so it is a single safe S3 key segment. Returns the problem.
pub fn check_version_name(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok {
        return Err(format!(
            "{} is not a valid version name: 1 to 64 of A-Z, a-z, 0-9, '.', '_' and '-', \
             starting with a letter or digit",
            quoted(name)
        ));
    }
    if name.contains("..") {
        return Err(format!(
            "{} is not a valid version name: it must not contain \"..\"",
            quoted(name)
        ));
    }
    Ok(())
}

impl Manifest {
    /// Checks every rule, reporting all problems at once. [`parse`] and [`describe_dir`]
    /// already did; this is for a manifest assembled or edited by hand.
    pub fn validate(&self) -> Result<(), ManifestError> {
        let mut p = Problems::default();
        self.check_header(&mut p);
        self.check_files(&mut p);
        check_serving(&self.serving, &mut p);
        if p.0.is_empty() {
            Ok(())
        } else {
            Err(ManifestError::Invalid(p.0))
        }
    }

    /// Checks that the manifest was found at its own key, so a manifest copied under
    /// another version's folder cannot register (or overwrite) that version.
    pub fn check_key(&self, key: &str) -> Result<(), ManifestError> {
        match parse_manifest_key(key) {
            Some((model, version)) if model == self.model && version == self.version => Ok(()),
            _ => Err(ManifestError::KeyMismatch {
                key: key.to_string(),
                model: self.model.clone(),
                version: self.version.clone(),
            }),
        }
    }

    /// The manifest as people read and write it: pretty JSON, files sorted by path.
    pub fn to_json_pretty(&self) -> String {
        // Cannot fail: the value holds only strings, integers and string-keyed maps.
        serde_json::to_string_pretty(&*self.canonical()).unwrap_or_default()
    }

    /// SHA-256 (lowercase hex) of the canonical form — compact JSON, fields in declaration
    /// order, files sorted by path, environment sorted by name — so that re-uploading the
    /// same manifest (in any file order or layout) is recognised as a no-op while a
    /// different manifest for a registered version is rejected. Changing the canonical form
    /// changes every digest, so it is part of the format.
    pub fn canonical_digest(&self) -> String {
        // Cannot fail: the value holds only strings, integers and string-keyed maps.
        let json = serde_json::to_vec(&*self.canonical()).unwrap_or_default();
        hex::encode(Sha256::digest(&json))
    }

    /// Total size of the version's files, in bytes.
    pub fn total_bytes(&self) -> u64 {
        self.files
            .iter()
            .fold(0u64, |total, file| total.saturating_add(file.size))
    }

    /// The S3 key of one of the version's files, `models/<model>/<version>/<path>`.
    pub fn object_key(&self, file: &FileEntry) -> String {
        format!(
            "{}{}",
            version_prefix(&self.model, &self.version),
            file.path
        )
    }

    /// This manifest with its files sorted by path (borrowed when they already are).
    fn canonical(&self) -> Cow<'_, Manifest> {
        if self.files.windows(2).all(|w| w[0].path <= w[1].path) {
            Cow::Borrowed(self)
        } else {
            let mut sorted = self.clone();
            sorted.files.sort_by(|a, b| a.path.cmp(&b.path));
            Cow::Owned(sorted)
        }
    }

    fn check_header(&self, p: &mut Problems) {
        if self.format != FORMAT {
            p.add(
                "format",
                format!(
                    "unsupported manifest format {}; this Meridian reads format {FORMAT}",
                    self.format
                ),
            );
        }
        p.check("model", check_model_name(&self.model));
        p.check("version", check_version_name(&self.version));
    }

    fn check_files(&self, p: &mut Problems) {
        if self.files.is_empty() {
            p.add("files", "must list at least one file");
        } else if self.files.len() > MAX_FILES {
            p.add(
                "files",
                format!(
                    "lists {} files, more than the limit of {MAX_FILES}",
                    self.files.len()
                ),
            );
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, file) in self.files.iter().enumerate() {
            match check_path(&file.path) {
                Err(problem) => p.add(format!("files[{i}].path"), problem),
                Ok(()) => {
                    if let Some(first) = seen.get(file.path.as_str()) {
                        p.add(
                            format!("files[{i}].path"),
                            format!(
                                "{} is listed twice (also files[{first}])",
                                quoted(&file.path)
                            ),
                        );
                    } else {
                        seen.insert(&file.path, i);
                    }
                }
            }
            p.check(
                &format!("files[{i}].size"),
                check_size(&file.path, file.size),
            );
            p.check(&format!("files[{i}].sha256"), check_sha256(&file.sha256));
            if let Some(crc) = &file.crc64nvme {
                p.check(
                    &format!("files[{i}].crc64nvme"),
                    crate::checksum::check_crc64nvme(crc),
                );
            }
        }
    }
}

/// Describes a local version folder as its manifest, for `meridian manifest DIR` and
/// `meridian upload`: every regular file below `dir` (following symbolic links; a top-level
/// `manifest.json` is skipped, being the manifest), with its size and streamed SHA-256,
/// `/`-separated and sorted. The names, the serving spec and the files' paths and sizes are
/// validated before any file is hashed, so a mistake is reported before hours of hashing.
pub fn describe_dir(
    dir: &Path,
    model: &str,
    version: &str,
    serving: Serving,
) -> Result<Manifest, ManifestError> {
    let mut manifest = Manifest {
        format: FORMAT,
        model: model.to_string(),
        version: version.to_string(),
        files: Vec::new(),
        serving,
    };
    let mut p = Problems::default();
    manifest.check_header(&mut p);
    check_serving(&manifest.serving, &mut p);
    if !p.0.is_empty() {
        return Err(ManifestError::Invalid(p.0));
    }

    let root = fs::canonicalize(dir).map_err(|e| io_error(dir, &e))?;
    let mut found = Vec::new();
    walk(dir, "", &mut vec![root], &mut found)?;
    found.sort_by(|a, b| a.path.cmp(&b.path));

    // Check paths, sizes and count with a placeholder digest before hashing anything.
    manifest.files = found
        .iter()
        .map(|f| FileEntry {
            path: f.path.clone(),
            size: f.size,
            sha256: "0".repeat(64),
            crc64nvme: None,
        })
        .collect();
    manifest.validate()?;

    let mut buffer = vec![0u8; READ_CHUNK];
    for (entry, file) in manifest.files.iter_mut().zip(&found) {
        let (size, sha256, crc64nvme) = hash_file(&file.local, &mut buffer)?;
        if size != file.size {
            return Err(ManifestError::Io {
                path: file.local.clone(),
                message: format!(
                    "changed while being read ({} bytes listed, {size} read); describe the \
                     folder again once it is complete",
                    file.size
                ),
            });
        }
        entry.sha256 = sha256;
        entry.crc64nvme = Some(crc64nvme);
    }
    Ok(manifest)
}

// ---------------------------------------------------------------------------------------
// Raw (unvalidated) shape: the manifest as serde reads it, before the rules are checked.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    format: u64,
    model: String,
    version: String,
    files: Vec<FileEntry>,
    serving: Serving,
}

impl TryFrom<RawManifest> for Manifest {
    type Error = ManifestError;

    /// Validates, then sorts the files (problems name the files by their index as written).
    fn try_from(raw: RawManifest) -> Result<Self, Self::Error> {
        let mut manifest = Manifest {
            format: raw.format,
            model: raw.model,
            version: raw.version,
            files: raw.files,
            serving: raw.serving,
        };
        manifest.validate()?;
        manifest.files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(manifest)
    }
}

/// Reads the environment map, rejecting a repeated name (which JSON parsers otherwise
/// resolve silently, each its own way).
fn unique_map<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    struct UniqueMap;

    impl<'de> Visitor<'de> for UniqueMap {
        type Value = BTreeMap<String, String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map of environment variable names to string values")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((name, value)) = map.next_entry::<String, String>()? {
                if out.contains_key(&name) {
                    return Err(A::Error::custom(format!(
                        "duplicate environment variable {name:?}"
                    )));
                }
                out.insert(name, value);
            }
            Ok(out)
        }
    }

    deserializer.deserialize_map(UniqueMap)
}

/// Accumulates problems so all of them are reported together.
#[derive(Default)]
struct Problems(Vec<FieldError>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, problem: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            problem: problem.into(),
        });
    }

    /// Records `result`'s complaint, if any, against `field`.
    fn check(&mut self, field: &str, result: Result<(), String>) {
        if let Err(problem) = result {
            self.add(field, problem);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Rules. Each returns the problem text, without the field path.

/// A value for a message: quoted, and cut short so a huge value cannot flood the report.
fn quoted(value: &str) -> String {
    const SHOWN: usize = 80;
    match value.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{:?}...", &value[..cut]),
        None => format!("{value:?}"),
    }
}

/// File paths become S3 keys under the version folder and local paths on download, so
/// they must stay inside the folder and mean the same thing everywhere.
fn check_path(path: &str) -> Result<(), String> {
    let shown = quoted(path);
    if path.is_empty() {
        return Err("path is empty".to_string());
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(format!(
            "{shown} is {} bytes long, more than {MAX_PATH_BYTES} (the S3 key \
             models/<model>/<version>/<path> must stay within 1024 bytes)",
            path.len()
        ));
    }
    if path.starts_with('/') {
        return Err(format!(
            "{shown} is absolute; paths are relative to the version folder"
        ));
    }
    if path.contains('\\') {
        return Err(format!(
            "{shown} contains a backslash; separate folders with '/'"
        ));
    }
    if path.chars().any(char::is_control) {
        return Err(format!("{shown} contains a control character"));
    }
    for segment in path.split('/') {
        match segment {
            "" => {
                return Err(format!(
                    "{shown} has an empty segment (\"//\" or a trailing '/')"
                ))
            }
            ".." => {
                return Err(format!(
                    "{shown} has a \"..\" segment, which would escape the version folder"
                ))
            }
            "." => {
                return Err(format!(
                    "{shown} has a \".\" segment; write the path without it"
                ))
            }
            _ => {}
        }
    }
    if path == MANIFEST_FILE {
        return Err(format!(
            "{shown} is reserved for the manifest itself and cannot be listed"
        ));
    }
    Ok(())
}

fn check_size(path: &str, size: u64) -> Result<(), String> {
    if size == 0 {
        return Err(format!(
            "{} is an empty file (0 bytes); leave it out",
            quoted(path)
        ));
    }
    if size > MAX_FILE_BYTES {
        return Err(format!(
            "{} has an absurd size of {size} bytes, more than {MAX_FILE_BYTES} \
             (5 TiB, S3's largest object)",
            quoted(path)
        ));
    }
    Ok(())
}

fn check_sha256(digest: &str) -> Result<(), String> {
    let shown = quoted(digest);
    if !digest.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "{shown} is not hex; give the SHA-256 as 64 lowercase hex digits"
        ));
    }
    if digest.len() != 64 {
        return Err(format!(
            "{shown} is {} hex digits long; a SHA-256 is 64",
            digest.len()
        ));
    }
    if digest.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("{shown} must be lowercase hex"));
    }
    Ok(())
}

/// The serving spec becomes a SageMaker model and endpoint config in every region; checking
/// SageMaker's own limits here fails the upload instead of a rollout half-way.
fn check_serving(serving: &Serving, p: &mut Problems) {
    p.check(
        "serving.image",
        crate::images::EcrImage::parse(&serving.image).map(|_| ()),
    );
    for (region, image) in &serving.images {
        p.check(
            &format!("serving.images.{region}"),
            crate::images::check_entry(region, image),
        );
    }

    let instance_type = &serving.instance_type;
    if !(instance_type.len() > 3 && instance_type.starts_with("ml.")) {
        p.add(
            "serving.instance_type",
            format!(
                "{} is not a SageMaker instance type (ml.*, e.g. ml.g5.2xlarge)",
                quoted(instance_type)
            ),
        );
    }

    let count = serving.instance_count;
    if !(1..=MAX_INSTANCE_COUNT).contains(&count) {
        p.add(
            "serving.instance_count",
            format!("must be between 1 and {MAX_INSTANCE_COUNT}, not {count}"),
        );
    }

    if let Some(variant) = &serving.variant_name {
        if let Err(problem) = crate::variant::check_variant_name(variant) {
            p.add("serving.variant_name", problem);
        }
    }

    if let Some(smoke_test) = &serving.smoke_test {
        for (field, problem) in smoke_test.problems() {
            p.add(format!("serving.smoke_test.{field}"), problem);
        }
    }

    let environment = &serving.environment;
    if environment.len() > MAX_ENVIRONMENT_ENTRIES {
        p.add(
            "serving.environment",
            format!(
                "has {} variables, more than {MAX_ENVIRONMENT_ENTRIES}",
                environment.len()
            ),
        );
    }
    for (name, value) in environment {
        let field = format!("serving.environment[{}]", quoted(name));
        if name.is_empty() {
            p.add(field, "variable name is empty");
        } else if name.chars().count() > MAX_ENVIRONMENT_CHARS {
            p.add(
                field,
                format!("variable name is longer than {MAX_ENVIRONMENT_CHARS} characters"),
            );
        } else if value.chars().count() > MAX_ENVIRONMENT_CHARS {
            p.add(
                field,
                format!("value is longer than {MAX_ENVIRONMENT_CHARS} characters"),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Directory walking and hashing.

/// A regular file found below the described folder.
struct Found {
    /// Path relative to the folder, `/`-separated.
    path: String,
    /// Where it is on this machine.
    local: PathBuf,
    /// Its size when listed.
    size: u64,
}

fn io_error(path: &Path, error: &io::Error) -> ManifestError {
    ManifestError::Io {
        path: path.to_path_buf(),
        message: error.to_string(),
    }
}

/// Lists the regular files below `dir` (whose path relative to the described folder is
/// `relative`). `ancestors` holds the canonical paths of the folders being walked, so a
/// symbolic link back to one of them is reported instead of followed forever.
fn walk(
    dir: &Path,
    relative: &str,
    ancestors: &mut Vec<PathBuf>,
    found: &mut Vec<Found>,
) -> Result<(), ManifestError> {
    let entries = fs::read_dir(dir).map_err(|e| io_error(dir, &e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, &e))?;
        let local = entry.path();
        let Ok(name) = entry.file_name().into_string() else {
            return Err(ManifestError::Io {
                path: local,
                message: "the name is not valid UTF-8, so it cannot be part of an S3 key"
                    .to_string(),
            });
        };
        let path = if relative.is_empty() {
            name
        } else {
            format!("{relative}/{name}")
        };
        // Follows symbolic links, so a linked file or folder is described as its target.
        let metadata = fs::metadata(&local).map_err(|e| io_error(&local, &e))?;
        if metadata.is_file() {
            if path == MANIFEST_FILE {
                continue;
            }
            found.push(Found {
                path,
                local,
                size: metadata.len(),
            });
        } else if metadata.is_dir() {
            let canonical = fs::canonicalize(&local).map_err(|e| io_error(&local, &e))?;
            if ancestors.contains(&canonical) {
                return Err(ManifestError::Io {
                    path: local,
                    message: "a symbolic link loop: this folder contains itself".to_string(),
                });
            }
            ancestors.push(canonical);
            walk(&local, &path, ancestors, found)?;
            ancestors.pop();
        } else {
            return Err(ManifestError::Io {
                path: local,
                message: "not a regular file or folder".to_string(),
            });
        }
    }
    Ok(())
}

/// Size, SHA-256 (lowercase hex) and CRC64NVME (base64) of a file, read once in
/// `buffer`-sized chunks.
fn hash_file(path: &Path, buffer: &mut [u8]) -> Result<(u64, String, String), ManifestError> {
    let mut file = fs::File::open(path).map_err(|e| io_error(path, &e))?;
    let mut hasher = Sha256::new();
    let mut crc = crate::checksum::Crc64Nvme::default();
    let mut size = 0u64;
    loop {
        match file.read(buffer) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buffer[..n]);
                crc.update(&buffer[..n]);
                size += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(path, &e)),
        }
    }
    Ok((size, hex::encode(hasher.finalize()), crc.finish()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::collections::HashSet;

    /// SHA-256 of "hello\n".
    const HELLO_SHA256: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

    fn valid_value() -> Value {
        json!({
            "format": 1,
            "model": "llama-3-8b",
            "version": "2026-11-24.1",
            "files": [
                { "path": "config.json", "size": 612, "sha256": HELLO_SHA256 },
                {
                    "path": "weights/shard-00002.safetensors",
                    "size": 2_147_483_648u64,
                    "sha256": "b".repeat(64)
                },
                {
                    "path": "weights/shard-00001.safetensors",
                    "size": 4_294_967_296u64,
                    "sha256": "a".repeat(64)
                }
            ],
            "serving": {
                "image": "763104351884.dkr.ecr.us-east-1.amazonaws.com/\
                          huggingface-pytorch-tgi-inference:2.4-tgi2.4-gpu-py311-cu124-ubuntu22.04",
                "instance_type": "ml.g5.2xlarge",
                "instance_count": 2,
                "variant_name": "primary",
                "environment": { "HF_MODEL_ID": "/opt/ml/model" }
            }
        })
    }

    fn valid() -> Manifest {
        parse(valid_value().to_string().as_bytes()).expect("fixture is valid")
    }

    fn serving() -> Serving {
        valid().serving
    }

    #[test]
    fn the_deprecated_variant_name_may_be_left_out_and_stays_out() {
        let mut value = valid_value();
        let written = value["serving"]
            .as_object_mut()
            .and_then(|s| s.remove("variant_name"));
        assert_eq!(written, Some(json!("primary")));
        let manifest = parse(value.to_string().as_bytes()).expect("valid without it");
        assert_eq!(manifest.serving.variant_name, None);
        assert!(!manifest.to_json_pretty().contains("variant_name"));
        assert_eq!(valid().serving.variant_name.as_deref(), Some("primary"));
    }

    #[test]
    fn valid_manifest_parses_sorted_and_round_trips() {
        let text = serde_json::to_string_pretty(&valid_value()).expect("serializes");
        let manifest = parse(text.as_bytes()).expect("valid");
        assert_eq!(manifest.format, 1);
        assert_eq!(manifest.model, "llama-3-8b");
        assert_eq!(manifest.version, "2026-11-24.1");
        let paths: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "config.json",
                "weights/shard-00001.safetensors",
                "weights/shard-00002.safetensors"
            ]
        );
        assert_eq!(manifest.serving.instance_count, 2);
        assert_eq!(
            manifest
                .serving
                .environment
                .get("HF_MODEL_ID")
                .map(String::as_str),
            Some("/opt/ml/model")
        );

        let pretty = manifest.to_json_pretty();
        assert!(pretty.contains("\n  \"files\": ["), "{pretty}");
        assert_eq!(parse(pretty.as_bytes()).expect("re-parses"), manifest);
        // Deserializing directly runs the same validation.
        assert_eq!(
            serde_json::from_str::<Manifest>(&pretty).expect("deserializes"),
            manifest
        );
        let mut bad = valid_value();
        bad["serving"]["instance_count"] = json!(0);
        let message = serde_json::from_value::<Manifest>(bad)
            .expect_err("invalid")
            .to_string();
        assert!(message.contains("serving.instance_count"), "{message}");
    }

    #[test]
    fn documented_example_is_valid() {
        let doc = include_str!("../../docs/manifest.md");
        let example = doc
            .split("```json\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("docs/manifest.md has a JSON example");
        let manifest = parse(example.as_bytes()).expect("the documented example is valid");
        assert_eq!(manifest.model, "llama-3-8b");
        assert!(manifest
            .check_key("models/llama-3-8b/2026-11-24.1/manifest.json")
            .is_ok());
    }

    #[test]
    fn region_images_are_optional_omitted_when_empty_and_part_of_the_digest() {
        let without = valid();
        assert!(without.serving.images.is_empty());
        assert!(!without.to_json_pretty().contains("\"images\""));
        let mut value = valid_value();
        value["serving"]["images"] = json!({});
        let empty = parse(value.to_string().as_bytes()).expect("valid");
        assert_eq!(empty.canonical_digest(), without.canonical_digest());
        let entry = "626614931356.dkr.ecr.af-south-1.amazonaws.com/tgi:2.4";
        value["serving"]["images"]["af-south-1"] = json!(entry);
        let with = parse(value.to_string().as_bytes()).expect("valid");
        assert_eq!(with.serving.images["af-south-1"], entry);
        assert_ne!(with.canonical_digest(), without.canonical_digest());
        let repeated = value.to_string().replace(
            "\"images\":{",
            &format!("\"images\":{{\"af-south-1\":\"{entry}\","),
        );
        assert!(matches!(
            parse(repeated.as_bytes()),
            Err(ManifestError::Syntax(_))
        ));
    }

    #[test]
    fn environment_is_optional_and_omitted_when_empty() {
        let mut value = valid_value();
        value["serving"]
            .as_object_mut()
            .expect("object")
            .remove("environment");
        let without = parse(value.to_string().as_bytes()).expect("valid");
        assert!(without.serving.environment.is_empty());
        assert!(!without.to_json_pretty().contains("environment"));

        value["serving"]["environment"] = json!({});
        let empty = parse(value.to_string().as_bytes()).expect("valid");
        assert_eq!(empty.canonical_digest(), without.canonical_digest());
    }

    #[test]
    fn canonical_digest_ignores_order_and_layout_but_not_content() {
        let manifest = valid();
        let digest = manifest.canonical_digest();
        assert_eq!(digest.len(), 64);
        assert!(check_sha256(&digest).is_ok());

        let mut reordered = valid_value();
        reordered["files"].as_array_mut().expect("array").reverse();
        reordered["serving"]["environment"] = json!({ "B": "2", "A": "1" });
        let mut env_swapped = valid_value();
        env_swapped["serving"]["environment"] = json!({ "A": "1", "B": "2" });
        let pretty = serde_json::to_string_pretty(&reordered).expect("serializes");
        assert_eq!(
            parse(pretty.as_bytes()).expect("valid").canonical_digest(),
            parse(env_swapped.to_string().as_bytes())
                .expect("valid")
                .canonical_digest()
        );

        // A hand-assembled manifest with unsorted files digests like the parsed one.
        let mut unsorted = manifest.clone();
        unsorted.files.reverse();
        assert_eq!(unsorted.canonical_digest(), digest);
        assert_eq!(unsorted.to_json_pretty(), manifest.to_json_pretty());

        let mut resized = manifest.clone();
        resized.files[0].size += 1;
        assert_ne!(resized.canonical_digest(), digest);
        let mut rescaled = manifest;
        rescaled.serving.instance_count = 3;
        assert_ne!(rescaled.canonical_digest(), digest);
    }

    #[derive(Debug, PartialEq)]
    enum Kind {
        Syntax,
        Invalid,
    }

    #[test]
    fn each_error_names_its_field_distinctly() {
        type Edit = fn(&mut Value);
        let cases: &[(&str, Edit, Kind, &str)] = &[
            (
                "unknown top-level field",
                |v| v["colour"] = json!("blue"),
                Kind::Syntax,
                "unknown field `colour`",
            ),
            (
                "unknown file field",
                |v| v["files"][1]["mode"] = json!("0644"),
                Kind::Syntax,
                "unknown field `mode`",
            ),
            (
                "unknown serving field",
                |v| v["serving"]["instance_cuont"] = json!(2),
                Kind::Syntax,
                "unknown field `instance_cuont`",
            ),
            (
                "missing field",
                |v| {
                    v.as_object_mut().expect("object").remove("serving");
                },
                Kind::Syntax,
                "missing field `serving`",
            ),
            (
                "negative size",
                |v| v["files"][0]["size"] = json!(-1),
                Kind::Syntax,
                "invalid value: integer `-1`",
            ),
            (
                "format 2",
                |v| v["format"] = json!(2),
                Kind::Invalid,
                "format: unsupported manifest format 2; this Meridian reads format 1",
            ),
            (
                "bad model",
                |v| v["model"] = json!("Llama_3"),
                Kind::Invalid,
                "model: \"Llama_3\" is not a valid model name",
            ),
            (
                "model too long",
                |v| v["model"] = json!("m".repeat(64)),
                Kind::Invalid,
                "model: \"mmmm",
            ),
            (
                "bad version",
                |v| v["version"] = json!("v1/2"),
                Kind::Invalid,
                "version: \"v1/2\" is not a valid version name: 1 to 64",
            ),
            (
                "version with ..",
                |v| v["version"] = json!("1..2"),
                Kind::Invalid,
                "version: \"1..2\" is not a valid version name: it must not contain \"..\"",
            ),
            (
                "dot-dot segment",
                |v| v["files"][1]["path"] = json!("weights/../../other/x"),
                Kind::Invalid,
                "files[1].path: \"weights/../../other/x\" has a \"..\" segment, which would \
                 escape the version folder",
            ),
            (
                "absolute path",
                |v| v["files"][1]["path"] = json!("/etc/passwd"),
                Kind::Invalid,
                "files[1].path: \"/etc/passwd\" is absolute",
            ),
            (
                "empty segment",
                |v| v["files"][1]["path"] = json!("weights//x"),
                Kind::Invalid,
                "files[1].path: \"weights//x\" has an empty segment",
            ),
            (
                "trailing slash",
                |v| v["files"][1]["path"] = json!("weights/"),
                Kind::Invalid,
                "files[1].path: \"weights/\" has an empty segment",
            ),
            (
                "dot segment",
                |v| v["files"][1]["path"] = json!("./weights/x"),
                Kind::Invalid,
                "files[1].path: \"./weights/x\" has a \".\" segment",
            ),
            (
                "empty path",
                |v| v["files"][1]["path"] = json!(""),
                Kind::Invalid,
                "files[1].path: path is empty",
            ),
            (
                "backslash",
                |v| v["files"][1]["path"] = json!("weights\\x"),
                Kind::Invalid,
                "files[1].path: \"weights\\\\x\" contains a backslash",
            ),
            (
                "control character",
                |v| v["files"][1]["path"] = json!("weights/\u{7}x"),
                Kind::Invalid,
                "files[1].path: \"weights/\\u{7}x\" contains a control character",
            ),
            (
                "reserved manifest path",
                |v| v["files"][1]["path"] = json!("manifest.json"),
                Kind::Invalid,
                "files[1].path: \"manifest.json\" is reserved for the manifest itself",
            ),
            (
                "path too long",
                |v| v["files"][1]["path"] = json!("p".repeat(901)),
                Kind::Invalid,
                "files[1].path: \"pppp",
            ),
            (
                "duplicate path",
                |v| v["files"][2]["path"] = json!("weights/shard-00002.safetensors"),
                Kind::Invalid,
                "files[2].path: \"weights/shard-00002.safetensors\" is listed twice \
                 (also files[1])",
            ),
            (
                "uppercase digest",
                |v| v["files"][0]["sha256"] = json!(HELLO_SHA256.to_uppercase()),
                Kind::Invalid,
                "files[0].sha256: \"5891B5B5",
            ),
            (
                "short digest",
                |v| v["files"][0]["sha256"] = json!("5891b5b5"),
                Kind::Invalid,
                "files[0].sha256: \"5891b5b5\" is 8 hex digits long; a SHA-256 is 64",
            ),
            (
                "non-hex digest",
                |v| v["files"][0]["sha256"] = json!(format!("{}zz", &HELLO_SHA256[..62])),
                Kind::Invalid,
                "files[0].sha256: \"5891b5b5",
            ),
            (
                "zero size",
                |v| v["files"][0]["size"] = json!(0),
                Kind::Invalid,
                "files[0].size: \"config.json\" is an empty file (0 bytes)",
            ),
            (
                "absurd size",
                |v| v["files"][0]["size"] = json!(MAX_FILE_BYTES + 1),
                Kind::Invalid,
                "files[0].size: \"config.json\" has an absurd size of 5497558138881 bytes",
            ),
            (
                "empty file list",
                |v| v["files"] = json!([]),
                Kind::Invalid,
                "files: must list at least one file",
            ),
            (
                "zero instance count",
                |v| v["serving"]["instance_count"] = json!(0),
                Kind::Invalid,
                "serving.instance_count: must be between 1 and 100, not 0",
            ),
            (
                "too many instances",
                |v| v["serving"]["instance_count"] = json!(101),
                Kind::Invalid,
                "serving.instance_count: must be between 1 and 100, not 101",
            ),
            (
                "bad instance type",
                |v| v["serving"]["instance_type"] = json!("g5.2xlarge"),
                Kind::Invalid,
                "serving.instance_type: \"g5.2xlarge\" is not a SageMaker instance type",
            ),
            (
                "bad variant name",
                |v| v["serving"]["variant_name"] = json!("primary_1"),
                Kind::Invalid,
                "serving.variant_name: \"primary_1\" is not a valid SageMaker variant name",
            ),
            (
                "variant name ending with hyphen",
                |v| v["serving"]["variant_name"] = json!("primary-"),
                Kind::Invalid,
                "serving.variant_name: \"primary-\" is not a valid SageMaker variant name",
            ),
            (
                "empty image",
                |v| v["serving"]["image"] = json!(""),
                Kind::Invalid,
                "serving.image: is empty",
            ),
            (
                "image too long",
                |v| v["serving"]["image"] = json!("i".repeat(256)),
                Kind::Invalid,
                "serving.image: \"iiii",
            ),
            (
                "image with whitespace",
                |v| v["serving"]["image"] = json!("my image:1"),
                Kind::Invalid,
                "serving.image: \"my image:1\" contains whitespace",
            ),
            (
                "image SageMaker cannot pull",
                |v| v["serving"]["image"] = json!("ghcr.io/huggingface/tgi:2.4"),
                Kind::Invalid,
                "serving.image: \"ghcr.io/huggingface/tgi:2.4\" is not a private Amazon ECR image",
            ),
            (
                "region image in another region",
                |v| {
                    v["serving"]["images"]["eu-west-1"] =
                        json!("123456789012.dkr.ecr.us-east-1.amazonaws.com/llm:1")
                },
                Kind::Invalid,
                "serving.images.eu-west-1: \"123456789012.dkr.ecr.us-east-1.amazonaws.com/llm:1\" \
                 is in us-east-1, not eu-west-1",
            ),
            (
                "region image for an unknown region",
                |v| {
                    v["serving"]["images"]["eu-west-9"] =
                        json!("123456789012.dkr.ecr.eu-west-9.amazonaws.com/llm:1")
                },
                Kind::Invalid,
                "serving.images.eu-west-9: unknown AWS region \"eu-west-9\"",
            ),
            (
                "empty environment name",
                |v| v["serving"]["environment"][""] = json!("x"),
                Kind::Invalid,
                "serving.environment[\"\"]: variable name is empty",
            ),
            (
                "environment value too long",
                |v| v["serving"]["environment"]["LONG"] = json!("v".repeat(1025)),
                Kind::Invalid,
                "serving.environment[\"LONG\"]: value is longer than 1024 characters",
            ),
            (
                "environment name too long",
                |v| v["serving"]["environment"]["N".repeat(1025)] = json!("x"),
                Kind::Invalid,
                "variable name is longer than 1024 characters",
            ),
            (
                "too many environment variables",
                |v| {
                    for i in 0..100 {
                        v["serving"]["environment"][format!("VAR_{i}")] = json!("x");
                    }
                },
                Kind::Invalid,
                "serving.environment: has 101 variables, more than 100",
            ),
        ];

        let mut messages = HashSet::new();
        for (what, edit, kind, expected) in cases {
            let mut value = valid_value();
            edit(&mut value);
            let error = parse(value.to_string().as_bytes()).expect_err(what);
            let message = error.to_string();
            match kind {
                Kind::Syntax => assert!(
                    matches!(error, ManifestError::Syntax(_)),
                    "{what}: {error:?}"
                ),
                Kind::Invalid => assert_eq!(error.problems().len(), 1, "{what}: {message}"),
            }
            assert!(error.is_permanent(), "{what}");
            assert!(
                message.contains(expected),
                "{what}: expected {expected:?} in:\n{message}"
            );
            assert!(
                messages.insert(message.clone()),
                "{what}: repeated {message}"
            );
        }

        // Digest problems are told apart even where the expectation is only a prefix.
        let digest_problem = |digest: &str| check_sha256(digest).expect_err(digest);
        assert!(digest_problem(&HELLO_SHA256.to_uppercase()).ends_with("must be lowercase hex"));
        assert!(digest_problem(&format!("{}zz", &HELLO_SHA256[..62])).contains("is not hex"));
        assert!(digest_problem("").contains("is 0 hex digits long"));
        assert!(check_path(&"p".repeat(901))
            .expect_err("too long")
            .contains("is 901 bytes long, more than 900"));
        assert!(check_path(&"p".repeat(900)).is_ok());
    }

    #[test]
    fn crc64nvme_is_optional_and_checked_when_given() {
        // A manifest without checksums (older `meridian manifest`) keeps its digest.
        let old = valid();
        assert!(old.files.iter().all(|f| f.crc64nvme.is_none()));
        assert!(!old.to_json_pretty().contains("crc64nvme"));
        assert_eq!(
            parse(old.to_json_pretty().as_bytes())
                .expect("valid")
                .canonical_digest(),
            old.canonical_digest()
        );

        let mut value = valid_value();
        value["files"][0]["crc64nvme"] = json!(crate::checksum::crc64nvme(b"hello\n"));
        let with = parse(value.to_string().as_bytes()).expect("valid with a checksum");
        assert_eq!(
            with.files[0].crc64nvme.as_deref(),
            Some(crate::checksum::crc64nvme(b"hello\n").as_str())
        );
        assert_ne!(with.canonical_digest(), old.canonical_digest());
        assert_eq!(
            parse(with.to_json_pretty().as_bytes()).expect("round trip"),
            with
        );

        value["files"][0]["crc64nvme"] = json!("AAAA");
        let error = parse(value.to_string().as_bytes()).expect_err("short checksum");
        assert_eq!(error.problems().len(), 1, "{error}");
        assert_eq!(error.problems()[0].field, "files[0].crc64nvme");
    }

    #[test]
    fn too_large_is_rejected_before_parsing() {
        let error = parse(&vec![b' '; MAX_MANIFEST_BYTES + 1]).expect_err("too large");
        assert_eq!(
            error,
            ManifestError::TooLarge {
                size: MAX_MANIFEST_BYTES + 1,
                max: MAX_MANIFEST_BYTES
            }
        );
        assert!(error.is_permanent());
        assert!(
            error.to_string().starts_with(&format!(
                "manifest is too large: {} bytes, more than the limit of {MAX_MANIFEST_BYTES} bytes",
                MAX_MANIFEST_BYTES + 1
            )),
            "{error}"
        );

        // Exactly at the limit is parsed.
        let mut text = valid_value().to_string().into_bytes();
        text.resize(MAX_MANIFEST_BYTES, b' ');
        assert_eq!(parse(&text).expect("at the limit"), valid());

        let error = parse(b"{ \"format\": 1,").expect_err("truncated");
        assert!(matches!(error, ManifestError::Syntax(_)), "{error:?}");
        assert!(error.to_string().contains("line 1"), "{error}");
    }

    /// The largest manifest the documented limits allow: 10,000 files of 900-byte paths,
    /// a 255-character image and 100 environment variables of 1,024-character names and
    /// values.
    pub(crate) fn largest_manifest() -> Manifest {
        // The longest private ECR image a region can have.
        let image = |region: &str| {
            let registry = format!("123456789012.dkr.ecr.{region}.amazonaws.com/");
            let tag = ":latest";
            let repository =
                "r".repeat(crate::images::MAX_IMAGE_CHARS - registry.len() - tag.len());
            format!("{registry}{repository}{tag}")
        };
        Manifest {
            format: FORMAT,
            model: "m".repeat(63),
            version: "v".repeat(64),
            files: (0..10_000)
                .map(|i| FileEntry {
                    path: format!("{i:05}{}", "p".repeat(895)),
                    size: 5 * 1024u64.pow(4),
                    sha256: "a".repeat(64),
                    crc64nvme: Some("AAAAAAAAAAA=".into()),
                })
                .collect(),
            serving: Serving {
                image: image("us-east-1"),
                instance_type: "ml.p5.48xlarge".into(),
                instance_count: 100,
                variant_name: Some("x".repeat(63)),
                environment: (0..100)
                    .map(|i| (format!("{i:03}{}", "K".repeat(1021)), "V".repeat(1024)))
                    .collect(),
                images: [
                    "us-east-1",
                    "eu-west-1",
                    "ap-southeast-1",
                    "us-west-2",
                    "ap-northeast-1",
                ]
                .iter()
                .map(|r| ((*r).to_owned(), image(r)))
                .collect(),
                smoke_test: Some(crate::smoke::SmokeTest {
                    content_type: "c".repeat(crate::smoke::MAX_CONTENT_TYPE_CHARS),
                    body: serde_json::json!({
                        "inputs": "b".repeat(crate::smoke::MAX_SMOKE_BODY_BYTES - 20)
                    }),
                    expect: Some(format!("/{}", "e".repeat(1000))),
                }),
            },
        }
    }

    /// The documented limits and the size limit agree: the largest manifest they allow
    /// parses (it was refused by a 1 MiB limit, as was any 10,000-file manifest).
    #[test]
    fn the_largest_manifest_the_limits_allow_parses() {
        let manifest = largest_manifest();
        let text = manifest.to_json_pretty();
        assert!(text.len() > 9_000_000, "{}", text.len());
        assert_eq!(parse(text.as_bytes()).expect("parses"), manifest);
    }

    #[test]
    fn too_many_files_is_one_problem() {
        let mut manifest = valid();
        manifest.files = (0..=MAX_FILES)
            .map(|i| FileEntry {
                path: format!("shards/{i:05}"),
                size: 1,
                sha256: HELLO_SHA256.to_string(),
                crc64nvme: None,
            })
            .collect();
        let error = manifest.validate().expect_err("too many");
        assert_eq!(
            error.problems(),
            [FieldError {
                field: "files".to_string(),
                problem: "lists 10001 files, more than the limit of 10000".to_string(),
            }]
        );
        manifest.files.pop();
        assert!(manifest.validate().is_ok());
    }

    #[test]
    fn all_problems_are_reported_together_by_written_index() {
        let mut value = valid_value();
        value["model"] = json!("Bad Model");
        value["files"][2]["path"] = json!("../x");
        value["files"][0]["size"] = json!(0);
        value["files"][0]["sha256"] = json!("abc");
        value["serving"]["instance_count"] = json!(0);
        let error = parse(value.to_string().as_bytes()).expect_err("invalid");
        let fields: Vec<&str> = error.problems().iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "model",
                "files[0].size",
                "files[0].sha256",
                "files[2].path",
                "serving.instance_count"
            ]
        );
        let message = error.to_string();
        assert_eq!(message.lines().count(), 6, "{message}");
        assert!(message.starts_with("invalid manifest:\n  model: \"Bad Model\""));
    }

    #[test]
    fn duplicate_environment_variable_is_a_syntax_error() {
        let text = valid_value().to_string().replace(
            "\"HF_MODEL_ID\":\"/opt/ml/model\"",
            "\"HF_MODEL_ID\":\"/opt/ml/model\",\"HF_MODEL_ID\":\"/other\"",
        );
        let error = parse(text.as_bytes()).expect_err("duplicate");
        assert!(matches!(error, ManifestError::Syntax(_)), "{error:?}");
        assert!(
            error
                .to_string()
                .contains("duplicate environment variable \"HF_MODEL_ID\""),
            "{error}"
        );

        let text =
            valid_value()
                .to_string()
                .replacen("\"format\":1", "\"format\":1,\"format\":1", 1);
        let error = parse(text.as_bytes()).expect_err("duplicate");
        assert!(
            error.to_string().contains("duplicate field `format`"),
            "{error}"
        );
    }

    #[test]
    fn keys_and_prefixes() {
        assert_eq!(
            version_prefix("llama-3-8b", "2026-11-24.1"),
            "models/llama-3-8b/2026-11-24.1/"
        );
        assert_eq!(
            manifest_key("llama-3-8b", "v1"),
            "models/llama-3-8b/v1/manifest.json"
        );
        assert_eq!(
            parse_manifest_key("models/llama-3-8b/v1/manifest.json"),
            Some(("llama-3-8b".to_string(), "v1".to_string()))
        );
        // Mis-named versions are still recognised, to be rejected by `check_key`.
        assert_eq!(
            parse_manifest_key("models/Llama/v1/manifest.json"),
            Some(("Llama".to_string(), "v1".to_string()))
        );
        for not_a_manifest in [
            "models/llama/v1/weights/manifest.json",
            "models/llama/manifest.json",
            "models/llama/v1/manifest.json/",
            "models/llama/v1/config.json",
            "models//v1/manifest.json",
            "models/llama//manifest.json",
            "/models/llama/v1/manifest.json",
            "other/llama/v1/manifest.json",
            "manifest.json",
            "",
        ] {
            assert_eq!(parse_manifest_key(not_a_manifest), None, "{not_a_manifest}");
        }

        let manifest = valid();
        assert_eq!(
            manifest.object_key(&manifest.files[1]),
            "models/llama-3-8b/2026-11-24.1/weights/shard-00001.safetensors"
        );
        assert_eq!(manifest.total_bytes(), 612 + 4_294_967_296 + 2_147_483_648);
    }

    #[test]
    fn check_key_requires_the_manifests_own_key() {
        let manifest = valid();
        assert_eq!(
            manifest.check_key("models/llama-3-8b/2026-11-24.1/manifest.json"),
            Ok(())
        );
        for key in [
            "models/llama-3-8b/2026-11-25.1/manifest.json",
            "models/other/2026-11-24.1/manifest.json",
            "models/llama-3-8b/2026-11-24.1/sub/manifest.json",
        ] {
            let error = manifest.check_key(key).expect_err(key);
            assert_eq!(
                error,
                ManifestError::KeyMismatch {
                    key: key.to_string(),
                    model: "llama-3-8b".to_string(),
                    version: "2026-11-24.1".to_string(),
                }
            );
            assert!(error.is_permanent());
            assert_eq!(
                error.to_string(),
                format!(
                    "manifest for model \"llama-3-8b\" version \"2026-11-24.1\" must be \
                     stored at \"models/llama-3-8b/2026-11-24.1/manifest.json\", not at {key:?}"
                )
            );
        }
    }

    #[test]
    fn name_rules() {
        for good in ["a", "llama-3-8b", "0", &"m".repeat(63)] {
            assert!(check_model_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-a", "Llama", "a_b", "a.b", "a/b", &"m".repeat(64)] {
            assert!(check_model_name(bad).is_err(), "{bad}");
        }
        for good in ["1", "v1.2", "2026-11-24.1", "A_b-C.d", &"v".repeat(64)] {
            assert!(check_version_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".v", "-v", "v/1", "v..1", "v 1", &"v".repeat(65)] {
            assert!(check_version_name(bad).is_err(), "{bad}");
        }
    }

    /// A fresh folder under the system temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let path = std::env::temp_dir().join(format!(
                "meridian-manifest-test-{}-{name}",
                std::process::id()
            ));
            // A leftover from an earlier run with the same pid.
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).expect("temp dir");
            TempDir(path)
        }

        fn write(&self, path: &str, content: &[u8]) {
            let path = self.0.join(path);
            fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
            fs::write(path, content).expect("write");
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn describe_dir_lists_sizes_and_digests() {
        let dir = TempDir::new("describe");
        dir.write("config.json", b"hello\n");
        // Larger than one read chunk, so the streaming hash crosses chunk boundaries.
        let shard: Vec<u8> = (0..READ_CHUNK * 2 + 12_345)
            .map(|i| (i % 251) as u8)
            .collect();
        dir.write("weights/a/shard-1.bin", &shard);
        dir.write("weights/b.bin", b"hello\n");
        dir.write(MANIFEST_FILE, b"{ \"skipped\": true }");
        dir.write("sub/manifest.json", b"hello\n");

        let manifest =
            describe_dir(&dir.0, "llama-3-8b", "v1", serving()).expect("describes the folder");
        let listed: Vec<(&str, u64, &str)> = manifest
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.size, f.sha256.as_str()))
            .collect();
        let shard_sha256 = hex::encode(Sha256::digest(&shard));
        assert_eq!(
            listed,
            [
                ("config.json", 6, HELLO_SHA256),
                ("sub/manifest.json", 6, HELLO_SHA256),
                (
                    "weights/a/shard-1.bin",
                    shard.len() as u64,
                    shard_sha256.as_str()
                ),
                ("weights/b.bin", 6, HELLO_SHA256),
            ]
        );
        assert_eq!(manifest.format, FORMAT);
        assert_eq!(manifest.model, "llama-3-8b");
        assert_eq!(manifest.version, "v1");
        assert_eq!(manifest.total_bytes(), 18 + shard.len() as u64);
        // S3's full-object CRC64NVME of each file, from the same read.
        assert_eq!(
            manifest.files[2].crc64nvme.as_deref(),
            Some(crate::checksum::crc64nvme(&shard).as_str())
        );
        assert_eq!(
            manifest.files[0].crc64nvme.as_deref(),
            Some(crate::checksum::crc64nvme(b"hello\n").as_str())
        );
        // What `meridian manifest DIR` prints parses back to the same manifest.
        assert_eq!(
            parse(manifest.to_json_pretty().as_bytes()).expect("valid"),
            manifest
        );
    }

    #[test]
    fn describe_dir_reports_problems() {
        // Names and serving spec are checked before the folder is even read.
        let missing = std::env::temp_dir().join("meridian-manifest-test-no-such-dir");
        let error = describe_dir(&missing, "Llama", "v1", serving()).expect_err("bad model");
        assert_eq!(error.problems().len(), 1, "{error}");
        assert_eq!(error.problems()[0].field, "model");

        let error = describe_dir(&missing, "llama", "v1", serving()).expect_err("no folder");
        assert!(matches!(error, ManifestError::Io { .. }), "{error:?}");
        assert!(!error.is_permanent());
        assert!(error.to_string().contains(&missing.display().to_string()));

        let dir = TempDir::new("empty");
        let error = describe_dir(&dir.0, "llama", "v1", serving()).expect_err("no files");
        assert!(
            error
                .to_string()
                .contains("files: must list at least one file"),
            "{error}"
        );

        dir.write("a.bin", b"hello\n");
        dir.write("weights/empty.bin", b"");
        let error = describe_dir(&dir.0, "llama", "v1", serving()).expect_err("empty file");
        assert!(
            error
                .to_string()
                .contains("files[1].size: \"weights/empty.bin\" is an empty file"),
            "{error}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn describe_dir_rejects_non_utf8_names_and_follows_links_without_looping() {
        use std::os::unix::ffi::OsStrExt;

        let dir = TempDir::new("links");
        dir.write("real/a.bin", b"hello\n");
        std::os::unix::fs::symlink(dir.0.join("real/a.bin"), dir.0.join("linked.bin"))
            .expect("symlink");
        let manifest = describe_dir(&dir.0, "llama", "v1", serving()).expect("valid");
        let paths: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["linked.bin", "real/a.bin"]);

        std::os::unix::fs::symlink(&dir.0, dir.0.join("real/loop")).expect("symlink");
        let error = describe_dir(&dir.0, "llama", "v1", serving()).expect_err("loop");
        assert!(error.to_string().contains("symbolic link loop"), "{error}");
        fs::remove_file(dir.0.join("real/loop")).expect("unlink");

        let odd = dir.0.join(std::ffi::OsStr::from_bytes(b"bad-\xff.bin"));
        fs::write(&odd, b"hello\n").expect("write");
        let error = describe_dir(&dir.0, "llama", "v1", serving()).expect_err("not UTF-8");
        assert!(
            matches!(&error, ManifestError::Io { path, .. } if *path == odd),
            "{error:?}"
        );
        assert!(error.to_string().contains("not valid UTF-8"), "{error}");
    }
}
