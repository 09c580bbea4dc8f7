//! No core dumps: the process holds card, account and routing numbers and the API key in memory
//! while it sends them, and a core file would write them to disk in full.
//!
//! `main` calls [`disable`] first thing, before any file is read: the core size limit goes to 0
//! (soft and hard, so nothing in the process can raise it again) and, on Linux, the process is
//! marked not dumpable, which also covers a system `core_pattern` that pipes dumps to a handler
//! regardless of the size limit.

/// Turns core dumps off for this process. Failure is reported, not fatal: a refund run should not
/// stop because a hardened kernel refused a call that only removes a privilege.
pub fn disable() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{DumpableBehavior, Resource, Rlimit, set_dumpable_behavior, setrlimit};
        setrlimit(
            Resource::Core,
            Rlimit {
                current: Some(0),
                maximum: Some(0),
            },
        )?;
        set_dumpable_behavior(DumpableBehavior::NotDumpable)?;
    }
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn the_core_limit_is_zero_and_the_process_not_dumpable() {
        super::disable().expect("disable core dumps");
        let limit = rustix::process::getrlimit(rustix::process::Resource::Core);
        assert_eq!((limit.current, limit.maximum), (Some(0), Some(0)));
        assert_eq!(
            rustix::process::dumpable_behavior().expect("read dumpable"),
            rustix::process::DumpableBehavior::NotDumpable
        );
    }
}
