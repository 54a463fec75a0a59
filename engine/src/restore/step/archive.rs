//! Archive: a transaction of barkeep's own committed after the target, and the current WAL
//! segment forced into Barman, so that recovery finds a commit after the target to stop at.
//! Nothing is changed on disk; a crash here leaves PostgreSQL running as before.

use super::super::plan::require_reachable;
use super::super::RestoreError;
use super::Cx;
use crate::{admin, probe, target::TargetTime};

pub(super) async fn run(cx: &Cx<'_>) -> Result<Option<String>, RestoreError> {
    let engine = cx.engine;
    let client = probe::connect(&engine.config().postgres, None).await?;
    admin::commit_sealing_transaction(&client).await?;
    drop(client);
    let out = engine.barman().switch_wal_archive().await?;
    cx.run.log_output(&out)?;
    let catalog = engine.catalog()?;
    let window = engine.recovery_window_of(&catalog).await?;
    let latest = require_reachable(
        &window,
        cx.target,
        "even after a WAL switch no later one reached Barman",
    )?;
    Ok(Some(format!(
        "last archived transaction {}",
        TargetTime::new(latest)
    )))
}
