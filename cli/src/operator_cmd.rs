//! `meridian rollout pause|resume|promote|abort MODEL [--reason TEXT]`: an operator's
//! command to the running rollout of a model, written as the version's operator control
//! record (who, why, when) that the state machine's gate reads at every phase boundary
//! and through Meridian's bake. An abort also wakes every region's wait for an endpoint
//! update, so the rollback starts now rather than when SageMaker finishes the update.

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;
use meridian::aws::ClientFactory;
use meridian::executions::Woken;
use meridian::operator::OperatorAction;
use meridian::registry::{Registry, VersionStatus};

use crate::target::Target;

/// The arguments every operator command takes.
#[derive(Args)]
pub struct OperatorArgs {
    /// The model whose running rollout to act on.
    pub model: String,
    /// Why (recorded with who gave the command, shown by `meridian rollout status`).
    #[arg(long)]
    pub reason: Option<String>,
    #[command(flatten)]
    pub target: Target,
}

/// What the state machine does once the command is recorded.
fn effect(action: OperatorAction) -> &'static str {
    match action {
        OperatorAction::Pause => {
            "the rollout holds at its next phase boundary (or in its bake) until resumed; \
             an endpoint deployment under way finishes first"
        }
        OperatorAction::Resume => "the rollout goes on at its next look at the gate",
        OperatorAction::Promote => "the rest of Meridian's bake is skipped: the rollout commits at its next look at the gate",
        OperatorAction::Abort => {
            "every region is rolled back now (or at the next phase boundary), and the version fails"
        }
    }
}

/// Records `action` for the model's running rollout, or refuses clearly.
pub async fn run(action: OperatorAction, args: OperatorArgs) -> Result<ExitCode> {
    let (fleet, clients) = args.target.load()?;
    let registry = Registry {
        client: aws_sdk_dynamodb::Client::new(&clients.config(&fleet.primary_region).await),
        table: fleet.registry_table.clone(),
    };
    let (lock, _) = registry.lock().await?;
    let holder = match &lock.holder {
        Some(h) if h.model == args.model => h,
        Some(h) => bail!(
            "no rollout of {} is running: the fleet's endpoints are held by {}/{}{}",
            args.model,
            h.model,
            h.version,
            queued_note(&lock, &args.model)
        ),
        None => bail!(
            "no rollout of {} is running (nothing holds the fleet's lock)",
            args.model
        ),
    };
    let record = registry.version(&holder.model, &holder.version).await?;
    if record
        .as_ref()
        .is_some_and(|r| r.status != VersionStatus::RollingOut)
    {
        bail!(
            "{}/{} holds the lock but is not rolling out ({:?}); see meridian rollout status",
            holder.model,
            holder.version,
            record.map(|r| r.status)
        );
    }
    let who = caller(&clients, &fleet.primary_region).await;
    match registry
        .apply_operator_action(
            &holder.model,
            &holder.version,
            action,
            &who,
            args.reason.as_deref(),
        )
        .await?
    {
        Ok(_) => {
            println!(
                "{} {}/{} recorded (by {who}{}): {}",
                action.as_str(),
                holder.model,
                holder.version,
                args.reason
                    .as_deref()
                    .map(|r| format!(", because {r}"))
                    .unwrap_or_default(),
                effect(action)
            );
            if action == OperatorAction::Abort {
                wake_deploy_waits(&clients, &fleet).await;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(refusal) => bail!(
            "cannot {} the rollout of {}/{}: {refusal}",
            action.as_str(),
            holder.model,
            holder.version
        ),
    }
}

/// Resumes every region's waiting deploy task so the state machine reaches the abort now;
/// a region whose wait cannot be woken rolls back when that wait ends (SageMaker's event or
/// the deploy backstop), which is said, not an error: the abort is recorded either way.
async fn wake_deploy_waits(clients: &ClientFactory, fleet: &meridian::fleet::Fleet) {
    for (region, woken) in meridian::executions::wake_deploy_waits(clients, fleet, "abort").await {
        match woken {
            Ok(Woken::Resumed) => println!("{region}: the wait for the endpoint update was woken"),
            Ok(Woken::NotWaiting) => {}
            Err(error) => eprintln!(
                "{region}: could not wake the wait for the endpoint update ({error}); \
                 that region rolls back when SageMaker's update ends or the deploy backstop passes"
            ),
        }
    }
}

fn queued_note(lock: &meridian::registry::RolloutLock, model: &str) -> String {
    lock.queue
        .iter()
        .position(|q| q.model == model)
        .map(|i| {
            format!(
                "; {model}/{} is queued behind it (position {})",
                lock.queue[i].version,
                i + 1
            )
        })
        .unwrap_or_default()
}

/// Who gives the command: the caller's ARN (STS `GetCallerIdentity`); when STS cannot
/// say, the local user, marked as unverified.
async fn caller(clients: &ClientFactory, region: &str) -> String {
    let sts = aws_sdk_sts::Client::new(&clients.config(region).await);
    match sts.get_caller_identity().send().await {
        Ok(identity) if identity.arn().is_some() => identity.arn().unwrap_or_default().to_owned(),
        Ok(_) | Err(_) => format!(
            "{} (unverified: STS GetCallerIdentity did not answer)",
            std::env::var("USER").unwrap_or_else(|_| "unknown user".into())
        ),
    }
}
