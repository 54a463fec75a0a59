//! Fault injection for the crash tests, compiled only with the `fault-injection` feature
//! (test builds of the CLI; never the release build cargo-leptos makes):
//! `BARKEEP_FAULT_KILL_AFTER=<step>:started|finished` SIGKILLs the process right after that
//! journal entry, `<step>:child` while the step's first child runs (for `recover`: once barman
//! has started writing into the data directory), exactly as an OOM kill would; `swap:renamed`
//! between a preview's swap renames and the start of the copy in production's place.

pub(crate) use kill::{at_entry, in_child, point};

#[cfg(feature = "fault-injection")]
mod kill {
    use std::path::Path;

    use super::super::journal::Record;
    use super::super::Step;

    const FAULT_ENV: &str = "BARKEEP_FAULT_KILL_AFTER";

    pub(crate) fn point(record: &Record) -> Option<String> {
        match record {
            Record::StepStarted { step, .. } => Some(format!("{}:started", step.name())),
            Record::StepFinished { step, .. } => Some(format!("{}:finished", step.name())),
            _ => None,
        }
    }

    fn wanted(point: &str) -> bool {
        std::env::var(FAULT_ENV).ok().as_deref() == Some(point)
    }

    fn die(point: &str) {
        tracing::error!(%point, "fault injection: killing this process");
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }

    pub(crate) fn at_entry(point: &str) {
        if wanted(point) {
            die(point);
        }
    }

    pub(crate) fn in_child(step: Step, data_dir: &Path) {
        let point = format!("{}:child", step.name());
        if !wanted(&point) {
            return;
        }
        let data_dir = data_dir.to_owned();
        // From another thread, so that this one goes on reading the child's output.
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            if step == Step::Recover {
                while std::time::Instant::now() < deadline
                    && std::fs::read_dir(&data_dir).map_or(true, |mut d| d.next().is_none())
                {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            } else {
                std::thread::sleep(std::time::Duration::from_millis(150));
            }
            die(&point);
        });
    }
}

#[cfg(not(feature = "fault-injection"))]
mod kill {
    use std::path::Path;

    use super::super::journal::Record;
    use super::super::Step;

    pub(crate) fn point(_: &Record) -> Option<String> {
        None
    }
    pub(crate) fn at_entry(_: &str) {}
    pub(crate) fn in_child(_: Step, _: &Path) {}
}
