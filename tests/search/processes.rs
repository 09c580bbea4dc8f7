//! Processes: a running command whose stderr is collected as it comes, and waiting for it to end.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use super::sequence::Outcome;
use crate::util::wait_while_running;

/// A running command whose stderr is collected as it comes, so a step can wait for a line and a
/// failure can show what it said.
pub(super) struct Watched {
    pub(super) child: Child,
    pub(super) said: Arc<Mutex<String>>,
    reader: std::thread::JoinHandle<()>,
}

impl Watched {
    pub(super) fn spawn(mut command: Command) -> Watched {
        let mut child = command.stderr(Stdio::piped()).spawn().expect("start refund-batch");
        let said = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().expect("stderr pipe");
        let collected = Arc::clone(&said);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut said = collected.lock().expect("stderr");
                said.push_str(&line);
                said.push('\n');
            }
        });
        Watched { child, said, reader }
    }
}

/// Waits for the command to end (failing after [`crate::util::PATIENCE`]) and gives its exit code and what it
/// said.
pub(super) fn finish(mut watched: Watched) -> Outcome {
    let status: ExitStatus =
        wait_while_running(&mut watched.child, "refund-batch to end", || false).expect("the condition never holds");
    // The pipe closes when the process ends (it starts no other): the reader has it all.
    watched.reader.join().expect("stderr reader");
    let said = watched.said.lock().expect("stderr").clone();
    Outcome {
        exits: vec![status.code()],
        said,
    }
}
