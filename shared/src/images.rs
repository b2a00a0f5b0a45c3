//! Which container image each region's SageMaker model runs. Pure.
//!
//! SageMaker pulls a model's image from Amazon ECR *in the model's own region* ("the Docker
//! image for inference container in Amazon ECR must be in the same region as the model or
//! endpoint"), or from a private Docker registry inside the model's VPC
//! (`RepositoryAccessMode=Vpc`), which Meridian does not configure. So every image here is a
//! private ECR image, `<account>.dkr.ecr.<region>.<suffix>/<repository>[:tag|@digest]`, and
//! each region gets its own:
//!
//! 1. the manifest's `serving.images` entry for the region, if any (always wins; it must be
//!    an image in that region);
//! 2. otherwise `serving.image` with its region replaced by the deploying region: the same
//!    registry account, repository and tag or digest. That is right for an image of the
//!    fleet's own account replicated by ECR replication (which keeps repository, tag and
//!    digest), and for AWS's Deep Learning Containers in the regions where they are served
//!    from the same account as in the manifest's region; where AWS serves them from another
//!    account (opt-in regions), give an explicit entry. No table of AWS's accounts is kept
//!    here: it changes, and a stale one would be wrong silently. `docs/manifest.md` explains.

use std::collections::BTreeMap;
use std::fmt;

use crate::regions::AWS_REGIONS;

/// Longest container image URI, in characters (SageMaker's limit on `Image`).
pub const MAX_IMAGE_CHARS: usize = 255;

/// What an image reference names inside its repository.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    /// No tag and no digest: Docker (and so SageMaker) pulls `latest`.
    Latest,
    /// `:<tag>`.
    Tag(String),
    /// `@sha256:<64 hex digits>`.
    Digest(String),
}

/// A private Amazon ECR image, parsed from its URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EcrImage {
    /// The registry's 12-digit AWS account ID.
    pub account: String,
    /// The registry's region.
    pub region: String,
    pub repository: String,
    pub reference: Reference,
}

impl EcrImage {
    /// Parses an image URI SageMaker can pull, or says why it cannot.
    pub fn parse(uri: &str) -> Result<Self, String> {
        let shown = quoted(uri);
        if uri.is_empty() {
            return Err("is empty; give the container image URI".into());
        }
        if uri.chars().count() > MAX_IMAGE_CHARS {
            return Err(format!(
                "{shown} is {} characters long, more than {MAX_IMAGE_CHARS}",
                uri.chars().count()
            ));
        }
        if uri.chars().any(char::is_whitespace) {
            return Err(format!("{shown} contains whitespace"));
        }
        let not_ecr = || {
            format!(
                "{shown} is not a private Amazon ECR image \
                 (<account>.dkr.ecr.<region>.amazonaws.com/<repository>[:tag|@digest]); \
                 SageMaker pulls a model's image from ECR in the endpoint's region \
                 (a private registry needs RepositoryAccessMode=Vpc, which Meridian does not set up)"
            )
        };
        let (host, path) = uri.split_once('/').ok_or_else(not_ecr)?;
        let (account, rest) = host.split_once(".dkr.ecr.").ok_or_else(not_ecr)?;
        let (region, suffix) = rest.split_once('.').ok_or_else(not_ecr)?;
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "{shown}: registry account {account:?} is not a 12-digit AWS account ID"
            ));
        }
        if !AWS_REGIONS.contains(&region) {
            return Err(format!("{shown}: unknown AWS region {region:?}"));
        }
        if suffix != dns_suffix(region) {
            return Err(format!(
                "{shown}: an ECR registry in {region} is at .{}, not .{suffix}",
                dns_suffix(region)
            ));
        }
        let (repository, reference) = match path.split_once('@') {
            Some((repository, digest)) => {
                check_digest(digest).map_err(|e| format!("{shown}: {e}"))?;
                (repository, Reference::Digest(digest.to_owned()))
            }
            None => match path.rsplit_once(':') {
                Some((repository, tag)) => {
                    check_tag(tag).map_err(|e| format!("{shown}: {e}"))?;
                    (repository, Reference::Tag(tag.to_owned()))
                }
                None => (path, Reference::Latest),
            },
        };
        check_repository(repository).map_err(|e| format!("{shown}: {e}"))?;
        Ok(Self {
            account: account.to_owned(),
            region: region.to_owned(),
            repository: repository.to_owned(),
            reference,
        })
    }

    /// The same account, repository and reference in `region`.
    pub fn in_region(&self, region: &str) -> Self {
        Self {
            region: region.to_owned(),
            ..self.clone()
        }
    }

    /// The tag ECR is asked about: the one written, or `latest` when none is.
    pub fn tag(&self) -> Option<&str> {
        match &self.reference {
            Reference::Latest => Some("latest"),
            Reference::Tag(tag) => Some(tag),
            Reference::Digest(_) => None,
        }
    }

    /// The digest written, if the image is named by digest.
    pub fn digest(&self) -> Option<&str> {
        match &self.reference {
            Reference::Digest(digest) => Some(digest),
            _ => None,
        }
    }
}

/// The URI, as SageMaker's `Image` takes it.
impl fmt::Display for EcrImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.dkr.ecr.{}.{}/{}",
            self.account,
            self.region,
            dns_suffix(&self.region),
            self.repository
        )?;
        match &self.reference {
            Reference::Latest => Ok(()),
            Reference::Tag(tag) => write!(f, ":{tag}"),
            Reference::Digest(digest) => write!(f, "@{digest}"),
        }
    }
}

/// Where a region's image came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The manifest's `serving.images` entry for the region.
    Entry,
    /// `serving.image`, already in the region.
    Image,
    /// `serving.image` with its region replaced by the deploying region.
    Derived,
}

/// The image one region's model runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionImage {
    pub image: EcrImage,
    pub source: Source,
}

impl fmt::Display for RegionImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = match self.source {
            Source::Entry => "serving.images entry",
            Source::Image => "serving.image",
            Source::Derived => "serving.image in this region",
        };
        write!(f, "{} ({how})", self.image)
    }
}

/// The image `region`'s model runs: its `images` entry if any, else `image` moved to the
/// region. Errors name the manifest field at fault.
pub fn image_for_region(
    image: &str,
    images: &BTreeMap<String, String>,
    region: &str,
) -> Result<RegionImage, String> {
    if let Some(entry) = images.get(region) {
        check_entry(region, entry).map_err(|e| format!("serving.images.{region}: {e}"))?;
        let image = EcrImage::parse(entry).map_err(|e| format!("serving.images.{region}: {e}"))?;
        return Ok(RegionImage {
            image,
            source: Source::Entry,
        });
    }
    let parsed = EcrImage::parse(image).map_err(|e| format!("serving.image: {e}"))?;
    let source = if parsed.region == region {
        Source::Image
    } else {
        Source::Derived
    };
    Ok(RegionImage {
        image: parsed.in_region(region),
        source,
    })
}

/// Checks one `serving.images` entry: a known region, and an ECR image in that region.
pub fn check_entry(region: &str, uri: &str) -> Result<(), String> {
    if !AWS_REGIONS.contains(&region) {
        return Err(format!("unknown AWS region {region:?}"));
    }
    let image = EcrImage::parse(uri)?;
    if image.region != region {
        return Err(format!(
            "{} is in {}, not {region}: SageMaker pulls the image from the endpoint's region",
            quoted(uri),
            image.region
        ));
    }
    Ok(())
}

/// The DNS suffix of a region's partition (China has its own).
fn dns_suffix(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    }
}

/// ECR's repository name rule: 2 to 256 characters, `/`-separated components of
/// lowercase letters and digits joined by single `.`, `_` or `-`.
fn check_repository(repository: &str) -> Result<(), String> {
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && c.split(['.', '_', '-']).all(|part| !part.is_empty())
    };
    if !(2..=256).contains(&repository.len()) || !repository.split('/').all(component_ok) {
        return Err(format!(
            "repository {repository:?} is not an ECR repository name (2 to 256 characters: \
             lowercase letters and digits, separated by single '.', '_', '-' or '/')"
        ));
    }
    Ok(())
}

/// Docker's tag rule: 1 to 128 of letters, digits, `_`, `.` and `-`, not starting with
/// `.` or `-`.
fn check_tag(tag: &str) -> Result<(), String> {
    let ok = (1..=128).contains(&tag.len())
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        && !tag.starts_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tag {tag:?} is not a valid image tag (1 to 128 of letters, digits, '_', '.' \
             and '-', not starting with '.' or '-')"
        ))
    }
}

/// `sha256:` and 64 lowercase hex digits, the digests ECR computes.
fn check_digest(digest: &str) -> Result<(), String> {
    let ok = digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "digest {digest:?} is not sha256: followed by 64 lowercase hex digits"
        ))
    }
}

/// A value for a message: quoted, and cut short so a huge value cannot flood it.
fn quoted(value: &str) -> String {
    const SHOWN: usize = 80;
    match value.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{:?}...", &value[..cut]),
        None => format!("{value:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TGI: &str = "763104351884.dkr.ecr.us-east-1.amazonaws.com/\
                       huggingface-pytorch-tgi-inference:2.4-tgi2.4-gpu-py311-cu124-ubuntu22.04";

    fn entries(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(r, i)| ((*r).to_owned(), (*i).to_owned()))
            .collect()
    }

    #[test]
    fn parses_tags_digests_and_untagged_images() {
        let image = EcrImage::parse(TGI).expect("valid");
        assert_eq!(image.account, "763104351884");
        assert_eq!(image.region, "us-east-1");
        assert_eq!(image.repository, "huggingface-pytorch-tgi-inference");
        assert_eq!(image.tag(), Some("2.4-tgi2.4-gpu-py311-cu124-ubuntu22.04"));
        assert_eq!(image.to_string(), TGI);

        let digest = format!("sha256:{}", "ab".repeat(32));
        let pinned = format!("123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/llm@{digest}");
        let image = EcrImage::parse(&pinned).expect("valid");
        assert_eq!(image.repository, "team/llm");
        assert_eq!((image.tag(), image.digest()), (None, Some(digest.as_str())));
        assert_eq!(image.to_string(), pinned);

        let untagged = "123456789012.dkr.ecr.ap-southeast-1.amazonaws.com/llm";
        let image = EcrImage::parse(untagged).expect("valid");
        assert_eq!(image.reference, Reference::Latest);
        assert_eq!(image.tag(), Some("latest"));
        assert_eq!(image.to_string(), untagged);

        let china = "727897471807.dkr.ecr.cn-north-1.amazonaws.com.cn/pytorch-inference:2.1";
        assert_eq!(EcrImage::parse(china).expect("valid").to_string(), china);
    }

    #[test]
    fn images_sagemaker_cannot_pull_are_refused_with_the_reason() {
        let digest = "sha256:".to_owned() + &"a".repeat(64);
        let cases: &[(&str, &str)] = &[
            ("", "is empty"),
            (
                "ghcr.io/huggingface/text-generation-inference:2.4",
                "is not a private Amazon ECR image",
            ),
            (
                "public.ecr.aws/docker/library/python:3",
                "is not a private Amazon ECR image",
            ),
            ("tgi:2.4", "is not a private Amazon ECR image"),
            (
                "docker.io/library/nginx:latest",
                "is not a private Amazon ECR image",
            ),
            (
                "12345.dkr.ecr.us-east-1.amazonaws.com/llm:1",
                "not a 12-digit AWS account ID",
            ),
            (
                "123456789012.dkr.ecr.mars-north-1.amazonaws.com/llm:1",
                "unknown AWS region \"mars-north-1\"",
            ),
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com.cn/llm:1",
                "is at .amazonaws.com, not .amazonaws.com.cn",
            ),
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/LLM:1",
                "is not an ECR repository name",
            ),
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/llm//x:1",
                "is not an ECR repository name",
            ),
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/l:1",
                "is not an ECR repository name",
            ),
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/llm:-1",
                "is not a valid image tag",
            ),
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/llm:",
                "is not a valid image tag",
            ),
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/llm@sha256:abc",
                "is not sha256: followed by 64",
            ),
            (
                "123456789012.dkr.ecr.us-east-1.amazonaws.com/llm my:1",
                "contains whitespace",
            ),
        ];
        for (uri, expected) in cases {
            let error = EcrImage::parse(uri).expect_err(uri);
            assert!(error.contains(expected), "{uri}: {error}");
        }
        let long = format!(
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/{}",
            "a".repeat(250)
        );
        assert!(EcrImage::parse(&long)
            .expect_err("too long")
            .contains("more than 255"));
        let upper_digest = format!(
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/llm@sha256:{}",
            "A".repeat(64)
        );
        assert!(EcrImage::parse(&upper_digest).is_err());
        let pinned = format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/llm@{digest}");
        assert!(EcrImage::parse(&pinned).is_ok());
    }

    #[test]
    fn each_region_gets_the_image_in_its_own_region_and_an_entry_wins() {
        let explicit = "626614931356.dkr.ecr.af-south-1.amazonaws.com/tgi:2.4";
        let images = entries(&[("af-south-1", explicit)]);
        let home = image_for_region(TGI, &images, "us-east-1").expect("home");
        assert_eq!(
            (home.image.to_string(), home.source),
            (TGI.into(), Source::Image)
        );
        let derived = image_for_region(TGI, &images, "eu-west-1").expect("derived");
        assert_eq!(derived.source, Source::Derived);
        assert_eq!(
            derived.image.to_string(),
            TGI.replace("us-east-1", "eu-west-1")
        );
        let entry = image_for_region(TGI, &images, "af-south-1").expect("entry");
        assert_eq!(
            (entry.image.to_string(), entry.source),
            (explicit.into(), Source::Entry)
        );
        assert!(entry.to_string().contains("serving.images entry"));
        let china = image_for_region(TGI, &images, "cn-northwest-1").expect("china");
        assert!(china
            .image
            .to_string()
            .starts_with("763104351884.dkr.ecr.cn-northwest-1.amazonaws.com.cn/"));
    }

    #[test]
    fn a_bad_entry_or_image_names_its_field() {
        let images = entries(&[(
            "eu-west-1",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/llm:1",
        )]);
        let error = image_for_region(TGI, &images, "eu-west-1").expect_err("wrong region");
        assert!(
            error.starts_with("serving.images.eu-west-1: ")
                && error.contains("is in us-east-1, not eu-west-1"),
            "{error}"
        );
        let error = image_for_region("tgi:1", &BTreeMap::new(), "eu-west-1").expect_err("not ecr");
        assert!(error.starts_with("serving.image: "), "{error}");
        assert!(check_entry("moon-1", TGI)
            .expect_err("region")
            .contains("unknown AWS region"));
        assert!(check_entry("us-east-1", TGI).is_ok());
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        fn region() -> impl Strategy<Value = String> {
            proptest::sample::select(AWS_REGIONS).prop_map(str::to_owned)
        }

        prop_compose! {
            fn image()(
                account in "[0-9]{12}",
                region in region(),
                repository in "[a-z0-9]{1,8}([._-][a-z0-9]{1,8}){0,2}(/[a-z0-9]{2,8}){0,2}",
                reference in prop_oneof![
                    Just(Reference::Latest),
                    "[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}".prop_map(Reference::Tag),
                    "[0-9a-f]{64}".prop_map(|h| Reference::Digest(format!("sha256:{h}"))),
                ],
            ) -> EcrImage {
                EcrImage { account, region, repository: format!("r{repository}"), reference }
            }
        }

        proptest! {
            #[test]
            fn uris_round_trip(image in image()) {
                prop_assert_eq!(EcrImage::parse(&image.to_string()), Ok(image));
            }

            /// Every region's image is in that region, keeps the account, repository and
            /// reference unless an entry names it, and the entry always wins.
            #[test]
            fn resolution_stays_in_the_deploying_region(
                image in image(),
                entry in image(),
                deploying in region(),
                with_entry in any::<bool>(),
            ) {
                let entry = entry.in_region(&deploying);
                let images = if with_entry {
                    BTreeMap::from([(deploying.clone(), entry.to_string())])
                } else {
                    BTreeMap::new()
                };
                let resolved = image_for_region(&image.to_string(), &images, &deploying)
                    .expect("valid inputs resolve");
                prop_assert_eq!(&resolved.image.region, &deploying);
                if with_entry {
                    prop_assert_eq!(resolved.image, entry);
                    prop_assert_eq!(resolved.source, Source::Entry);
                } else {
                    prop_assert_eq!(&resolved.image, &image.in_region(&deploying));
                    prop_assert_eq!(resolved.source == Source::Image, image.region == deploying);
                }
            }

            /// An entry for another region never changes this region's image.
            #[test]
            fn other_regions_entries_are_ignored(
                image in image(),
                entry in image(),
                deploying in region(),
            ) {
                prop_assume!(entry.region != deploying);
                let images = BTreeMap::from([(entry.region.clone(), entry.to_string())]);
                let resolved = image_for_region(&image.to_string(), &images, &deploying)
                    .expect("valid inputs resolve");
                prop_assert_eq!(resolved.image, image.in_region(&deploying));
            }
        }
    }
}
