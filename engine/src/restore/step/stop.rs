//! Stop: PostgreSQL blocked from starting, stopped, and proven stopped from its data directory
//! (postmaster.pid and the process behind it). A crash here leaves it stopped or still
//! stopping; resume rolls back, which starts it again.

use super::super::RestoreError;
use crate::service::ServiceControl;
use crate::Engine;

pub(super) async fn run(engine: &Engine) -> Result<Option<String>, RestoreError> {
    // Blocked first: nothing may start it between the stop and the recover.
    engine.service().guard_against_start().await?;
    engine.service().stop().await?;
    Ok(Some("PostgreSQL stopped (no live postmaster)".into()))
}
