//! `/logging` on one Envoy: list, apply steps and check Envoy took them, restore.

use std::collections::BTreeMap;

use super::Error;
use super::model::{Level, Loggers};
use super::plan::{Step, expected, mismatches, restore_plan};
use crate::admin::AdminClient;

/// `POST /logging` with no parameters: the loggers and their levels.
pub async fn list(client: &mut AdminClient) -> crate::Result<Loggers> {
    let text = client.logging(&[]).await?;
    Ok(Loggers::parse(&text, client.target())?)
}

/// Send `steps` in order; then check that every logger they touch has the level asked for.
/// Returns the levels after. `before` is the list read just before.
pub async fn apply(
    client: &mut AdminClient,
    before: &Loggers,
    steps: &[Step],
) -> crate::Result<Loggers> {
    let mut after = None;
    for step in steps {
        after = Some(post(client, step).await?);
    }
    let after = match after {
        Some(a) => a,
        None => list(client).await?,
    };
    let mut want = expected(before, steps);
    if !steps.iter().any(|s| matches!(s, Step::All(_))) {
        // Only the named loggers: others may change under us (another user) and are not ours.
        want.0.retain(|k, _| {
            steps
                .iter()
                .any(|s| matches!(s, Step::Set(m) if m.contains_key(k)))
        });
    }
    let m = mismatches(&want, &after);
    if !m.is_empty() {
        return Err(Error::NotApplied {
            target: client.target().to_string(),
            mismatches: m,
        }
        .into());
    }
    Ok(after)
}

/// One step. Several loggers go in one `?paths=a:L,b:L` request (Envoy ≥ 1.18, which also
/// rejects the whole request if one name is unknown); an Envoy that answers 400 to `paths` gets
/// one `?name=L` request per logger.
async fn post(client: &mut AdminClient, step: &Step) -> crate::Result<Loggers> {
    match client.logging(&step.params()).await {
        Ok(text) => Ok(Loggers::parse(&text, client.target())?),
        Err(crate::admin::Error::Status { status: 400, .. }) if matches!(step, Step::Set(m) if m.len() > 1) =>
        {
            let Step::Set(m) = step else {
                return Err(Error::BadSpec(step.describe()).into());
            };
            tracing::debug!(
                target = client.target(),
                "?paths= refused; one request per logger"
            );
            let mut last = String::new();
            for (k, v) in m {
                last = client.logging(&[(k.clone(), v.to_string())]).await?;
            }
            Ok(Loggers::parse(&last, client.target())?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Put back `previous`: read the current levels and set every logger that differs.
/// Returns what was set.
pub async fn restore(
    client: &mut AdminClient,
    previous: &Loggers,
) -> crate::Result<BTreeMap<String, Level>> {
    let current = list(client).await?;
    let plan = restore_plan(previous, &current);
    if !plan.is_empty() {
        apply(client, &current, &[Step::Set(plan.clone())]).await?;
    }
    Ok(plan)
}
