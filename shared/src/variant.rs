//! The endpoint's production variant name. The fleet file owns it (`variant_name`, one
//! name for every region's endpoint): a blue/green update needs the new endpoint config to
//! keep the variant's name, and the alarms, the dashboard and the Application Auto Scaling
//! target (`endpoint/<endpoint>/variant/<variant>`) are all keyed by it, so a name that
//! changed with a model version would leave them watching and scaling nothing.

/// `variant_name` when the fleet file gives none.
pub const DEFAULT_VARIANT_NAME: &str = "primary";

/// SageMaker's rule for a production variant name: `[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}`.
pub fn check_variant_name(name: &str) -> Result<(), String> {
    let valid = (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid SageMaker variant name: 1 to 63 of A-Z, a-z, 0-9 and '-', \
             starting and ending with a letter or digit"
        ))
    }
}

/// Why a version whose manifest still names a variant (the deprecated
/// `serving.variant_name`) cannot roll out on this fleet: it names another variant than the
/// fleet file's. `None` when it names none, or the same one.
pub fn manifest_variant_refusal(manifest: Option<&str>, fleet: &str) -> Option<String> {
    match manifest {
        Some(named) if named != fleet => Some(format!(
            "the manifest's serving.variant_name {named:?} differs from the fleet file's \
             variant_name {fleet:?}: serving.variant_name is deprecated, the fleet file names \
             the variant (blue/green updates, alarms, dashboard and autoscaling need it \
             unchanged); remove it from the manifest, or set it to {fleet:?}"
        )),
        _ => None,
    }
}

/// The Application Auto Scaling resource id of an endpoint's variant.
pub fn scalable_target_resource_id(endpoint: &str, variant: &str) -> String {
    format!("endpoint/{endpoint}/variant/{variant}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_names_follow_sagemakers_pattern() {
        for good in ["primary", "a", "A-1", "blue--green", &"x".repeat(63)] {
            assert_eq!(check_variant_name(good), Ok(()), "{good}");
        }
        for bad in ["", "-a", "a-", "primary_1", "a.b", "ü", &"x".repeat(64)] {
            let problem = check_variant_name(bad).expect_err(bad);
            assert!(
                problem.contains("not a valid SageMaker variant name"),
                "{problem}"
            );
        }
    }

    #[test]
    fn a_manifest_may_only_repeat_the_fleets_variant() {
        assert_eq!(manifest_variant_refusal(None, "primary"), None);
        assert_eq!(manifest_variant_refusal(Some("primary"), "primary"), None);
        let refusal = manifest_variant_refusal(Some("blue"), "primary").expect("refused");
        assert!(refusal.contains("\"blue\""), "{refusal}");
        assert!(refusal.contains("deprecated"), "{refusal}");
        assert!(refusal.contains("variant_name \"primary\""), "{refusal}");
    }

    #[test]
    fn the_scalable_target_names_endpoint_and_variant() {
        assert_eq!(
            scalable_target_resource_id("llm", "blue"),
            "endpoint/llm/variant/blue"
        );
    }
}
