//! The image check before anything is deployed: each region's model runs the image
//! [`meridian::images`] resolves for it, and an image of the fleet's own account must exist
//! in that region's ECR registry. Another account's image (AWS's Deep Learning Containers)
//! cannot be listed by our role and is left to SageMaker's `CreateModel`.

use std::future::Future;

use aws_sdk_ecr::error::ProvideErrorMetadata;
use aws_sdk_ecr::types::ImageIdentifier;
use meridian::aws::ClientFactory;
use meridian::images::{image_for_region, EcrImage, RegionImage};
use meridian::manifest::Serving;
use meridian::rollout::RolloutError;

/// Whether an image exists in its registry (ECR in the image's own region).
pub trait ImageCatalog: Send + Sync {
    fn exists(&self, image: &EcrImage) -> impl Future<Output = Result<bool, RolloutError>> + Send;
}

/// ECR `DescribeImages`, in the image's region.
pub struct EcrCatalog<'a> {
    pub clients: &'a ClientFactory,
}

impl ImageCatalog for EcrCatalog<'_> {
    async fn exists(&self, image: &EcrImage) -> Result<bool, RolloutError> {
        let ecr = aws_sdk_ecr::Client::new(&self.clients.config(&image.region).await);
        let id = ImageIdentifier::builder()
            .set_image_tag(image.tag().map(str::to_owned))
            .set_image_digest(image.digest().map(str::to_owned))
            .build();
        let described = ecr
            .describe_images()
            .registry_id(&image.account)
            .repository_name(&image.repository)
            .image_ids(id)
            .send()
            .await;
        match described {
            Ok(output) => Ok(!output.image_details().is_empty()),
            Err(error) => match error.code() {
                Some("ImageNotFoundException" | "RepositoryNotFoundException") => Ok(false),
                // Our own request or permissions are wrong: retrying changes nothing.
                Some(
                    "AccessDeniedException" | "InvalidParameterException" | "ValidationException",
                ) => Err(RolloutError::Invalid(format!(
                    "checking image {image} in ECR: {}",
                    aws_sdk_ecr::error::DisplayErrorContext(&error)
                ))),
                _ => Err(RolloutError::Retryable(format!(
                    "checking image {image} in ECR: {}",
                    aws_sdk_ecr::error::DisplayErrorContext(&error)
                ))),
            },
        }
    }
}

/// The account of an ARN (`arn:partition:service:region:account:resource`).
pub fn arn_account(arn: &str) -> Option<&str> {
    arn.split(':')
        .nth(4)
        .filter(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()))
}

/// The image `region`'s model will run, checked: refused (non-retryable, naming the
/// region and the image) when it cannot be resolved, or when it is an image of
/// `own_account` that the region's registry does not hold.
pub async fn check_region_image(
    catalog: &impl ImageCatalog,
    serving: &Serving,
    region: &str,
    own_account: &str,
) -> Result<RegionImage, RolloutError> {
    let resolved = image_for_region(&serving.image, &serving.images, region)
        .map_err(|e| RolloutError::Invalid(format!("the image for {region}: {e}")))?;
    if resolved.image.account != own_account {
        tracing::info!(%region, image = %resolved, "image of another account: left to SageMaker to pull");
        return Ok(resolved);
    }
    if !catalog.exists(&resolved.image).await? {
        return Err(RolloutError::Invalid(format!(
            "{region} has no image {resolved} in its ECR registry: SageMaker pulls from the \
             endpoint's region, so push or replicate the image there, or name one in \
             serving.images.{region}"
        )));
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Mutex;

    use meridian::images::Source;

    use super::*;

    const OWN: &str = "123456789012";

    /// Images by URI, and the images asked about.
    #[derive(Default)]
    struct InMemoryCatalog {
        held: BTreeSet<String>,
        failure: Option<fn(String) -> RolloutError>,
        asked: Mutex<Vec<String>>,
    }

    impl ImageCatalog for InMemoryCatalog {
        async fn exists(&self, image: &EcrImage) -> Result<bool, RolloutError> {
            self.asked
                .lock()
                .expect("not poisoned")
                .push(image.to_string());
            if let Some(failure) = self.failure {
                return Err(failure(format!("ECR failed for {image}")));
            }
            Ok(self.held.contains(&image.to_string()))
        }
    }

    fn serving(image: &str, images: &[(&str, &str)]) -> Serving {
        Serving {
            image: image.into(),
            images: images
                .iter()
                .map(|(r, i)| ((*r).to_owned(), (*i).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            instance_type: "ml.g5.2xlarge".into(),
            instance_count: 1,
            variant_name: None,
            environment: BTreeMap::new(),
            smoke_test: None,
        }
    }

    fn ours(region: &str) -> String {
        format!("{OWN}.dkr.ecr.{region}.amazonaws.com/llm:7")
    }

    #[tokio::test]
    async fn an_own_image_present_in_the_region_passes_and_is_the_regions_own() {
        let catalog = InMemoryCatalog {
            held: BTreeSet::from([ours("eu-west-1")]),
            ..Default::default()
        };
        let resolved = check_region_image(
            &catalog,
            &serving(&ours("us-east-1"), &[]),
            "eu-west-1",
            OWN,
        )
        .await
        .expect("present");
        assert_eq!(resolved.image.to_string(), ours("eu-west-1"));
        assert_eq!(resolved.source, Source::Derived);
        assert_eq!(
            *catalog.asked.lock().expect("lock"),
            vec![ours("eu-west-1")]
        );
    }

    #[tokio::test]
    async fn an_own_image_missing_in_the_region_is_refused_naming_both() {
        let catalog = InMemoryCatalog {
            held: BTreeSet::from([ours("us-east-1")]),
            ..Default::default()
        };
        let error = check_region_image(
            &catalog,
            &serving(&ours("us-east-1"), &[]),
            "ap-southeast-1",
            OWN,
        )
        .await
        .expect_err("missing");
        let RolloutError::Invalid(message) = error else {
            panic!("not Invalid: {error:?}");
        };
        assert!(
            message.starts_with("ap-southeast-1 has no image ")
                && message.contains(&ours("ap-southeast-1")),
            "{message}"
        );
    }

    #[tokio::test]
    async fn another_accounts_image_is_not_asked_about() {
        let catalog = InMemoryCatalog::default();
        let dlc = "763104351884.dkr.ecr.us-east-1.amazonaws.com/tgi:2.4";
        let resolved = check_region_image(&catalog, &serving(dlc, &[]), "eu-west-1", OWN)
            .await
            .expect("unchecked");
        assert_eq!(
            resolved.image.to_string(),
            "763104351884.dkr.ecr.eu-west-1.amazonaws.com/tgi:2.4"
        );
        assert!(catalog.asked.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn an_entry_for_the_region_is_the_one_checked() {
        let entry = format!("{OWN}.dkr.ecr.eu-west-1.amazonaws.com/other-name:7");
        let catalog = InMemoryCatalog {
            held: BTreeSet::from([entry.clone()]),
            ..Default::default()
        };
        let resolved = check_region_image(
            &catalog,
            &serving(&ours("us-east-1"), &[("eu-west-1", &entry)]),
            "eu-west-1",
            OWN,
        )
        .await
        .expect("entry present");
        assert_eq!(
            (resolved.image.to_string(), resolved.source),
            (entry.clone(), Source::Entry)
        );
        assert_eq!(*catalog.asked.lock().expect("lock"), vec![entry]);
    }

    #[tokio::test]
    async fn an_unresolvable_image_is_invalid_and_ecr_errors_keep_their_class() {
        let catalog = InMemoryCatalog::default();
        let error = check_region_image(&catalog, &serving("tgi:1", &[]), "eu-west-1", OWN)
            .await
            .expect_err("not ECR");
        assert!(
            matches!(&error, RolloutError::Invalid(m) if m.starts_with("the image for eu-west-1: serving.image: ")),
            "{error:?}"
        );
        let throttled = InMemoryCatalog {
            failure: Some(RolloutError::Retryable),
            ..Default::default()
        };
        let error = check_region_image(
            &throttled,
            &serving(&ours("us-east-1"), &[]),
            "eu-west-1",
            OWN,
        )
        .await
        .expect_err("ECR down");
        assert!(matches!(error, RolloutError::Retryable(_)), "{error:?}");
    }

    #[test]
    fn the_account_comes_from_an_arn() {
        assert_eq!(
            arn_account("arn:aws:iam::123456789012:role/x-sagemaker"),
            Some(OWN)
        );
        assert_eq!(arn_account("arn:aws:iam::role/x"), None);
        assert_eq!(arn_account("not an arn"), None);
    }
}
