//! Running the compiler: plain passthrough (exec), and a streamed, captured compile on a miss.
//!
//! On a miss rustc's stderr reaches cargo line by line as it is produced, while a copy is kept
//! for the entry. Cargo starts dependents when the `.rmeta` artifact notification arrives, so
//! buffering stderr until rustc exits (as sccache does) would cost the cold build its pipelining.

use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::Instant;

/// The program and the arguments that come before rustc's own (`clippy-driver rustc`, or
/// `rustc`).
#[derive(Debug, Clone)]
pub struct CompilerChain {
    pub program: OsString,
    pub leading_args: Vec<OsString>,
    /// Variables set for the program on top of rcache's own environment (a build script's
    /// `PATH` with rcache's compiler links first); empty for a compiler.
    pub env: Vec<(OsString, OsString)>,
}

impl CompilerChain {
    /// The command that runs this chain with `args`.
    pub fn command(&self, args: &[OsString]) -> Command {
        let mut command = Command::new(&self.program);
        command
            .args(&self.leading_args)
            .args(args)
            .envs(self.env.iter().map(|(name, value)| (name, value)));
        command
    }
}

/// The real program and its arguments, exactly as the caller asked.
#[derive(Debug, Clone)]
pub struct Program {
    pub chain: CompilerChain,
    pub args: Vec<OsString>,
}

impl Program {
    /// A program with no leading arguments (a C compiler, a build script).
    pub fn plain(program: OsString, args: Vec<OsString>) -> Program {
        Program {
            chain: CompilerChain {
                program,
                leading_args: Vec::new(),
                env: Vec::new(),
            },
            args,
        }
    }

    /// The program's path, for messages.
    pub fn path(&self) -> &std::path::Path {
        std::path::Path::new(&self.chain.program)
    }
}

/// Replaces this process with the compiler: exit code, signals, stdin, stdout and stderr are
/// exactly the compiler's. Returns only if the exec failed.
pub fn exec(chain: &CompilerChain, args: &[OsString]) -> io::Error {
    chain.command(args).exec()
}

/// A finished compile.
#[derive(Debug)]
pub struct Compiled {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub duration_ms: u64,
}

/// Runs the compiler, forwarding stdout and stderr as they arrive and capturing both. Each line
/// of stderr goes through `keep_line` first, which may rewrite it (remapped paths put back);
/// a line it returns false for is neither forwarded nor captured (an artifact notification for
/// a dep-info file rcache asked for itself).
pub fn compile(
    chain: &CompilerChain,
    args: &[OsString],
    keep_line: impl Fn(&mut Vec<u8>) -> bool + Send + 'static,
) -> io::Result<Compiled> {
    compile_command(chain.command(args), keep_line)
}

/// [`compile`] of a prepared command (a build script whose environment rcache adjusted).
pub fn compile_command(
    mut command: Command,
    keep_line: impl Fn(&mut Vec<u8>) -> bool + Send + 'static,
) -> io::Result<Compiled> {
    let clock = Instant::now();
    let mut child = command
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let stdout_thread = thread::spawn(move || forward_chunks(stdout, io::stdout()));
    let stderr_thread = thread::spawn(move || forward_lines(stderr, io::stderr(), keep_line));
    let status = child.wait()?;
    let stdout = stdout_thread.join().unwrap_or_default();
    let stderr = stderr_thread.join().unwrap_or_default();
    Ok(Compiled {
        status,
        stdout,
        stderr,
        duration_ms: clock.elapsed().as_millis() as u64,
    })
}

/// Copies chunks as they arrive. A closed destination does not stop the capture.
fn forward_chunks(mut source: impl Read, mut destination: impl Write) -> Vec<u8> {
    let mut captured = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    let mut destination_open = true;
    loop {
        let read = match source.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if destination_open {
            destination_open = destination
                .write_all(&buffer[..read])
                .and_then(|()| destination.flush())
                .is_ok();
        }
        captured.extend_from_slice(&buffer[..read]);
    }
    captured
}

/// Copies whole lines as they arrive (rustc's JSON diagnostics are one per line).
fn forward_lines(
    source: impl Read,
    mut destination: impl Write,
    keep_line: impl Fn(&mut Vec<u8>) -> bool,
) -> Vec<u8> {
    let mut reader = BufReader::with_capacity(64 * 1024, source);
    let mut captured = Vec::new();
    let mut line = Vec::new();
    let mut destination_open = true;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
        if !keep_line(&mut line) {
            continue;
        }
        if destination_open {
            destination_open = destination
                .write_all(&line)
                .and_then(|()| destination.flush())
                .is_ok();
        }
        captured.extend_from_slice(&line);
    }
    captured
}

/// The exit code to return for a compiler's status: its code, or 128 + signal as a shell does.
pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_forwarded_and_filtered() {
        let input: &[u8] = b"keep 1\ndrop me\nkeep 2";
        let mut forwarded = Vec::new();
        let captured = forward_lines(input, &mut forwarded, |line| {
            if line.starts_with(b"keep 2") {
                line.extend_from_slice(b" (rewritten)");
            }
            !line.starts_with(b"drop")
        });
        assert_eq!(captured, b"keep 1\nkeep 2 (rewritten)");
        assert_eq!(forwarded, b"keep 1\nkeep 2 (rewritten)");
    }

    #[test]
    fn compile_captures_and_reports_status() {
        let chain = CompilerChain {
            program: "sh".into(),
            leading_args: vec![],
            env: vec![("RCACHE_TEST_VALUE".into(), "set".into())],
        };
        let args: Vec<OsString> = vec![
            "-c".into(),
            "echo out $RCACHE_TEST_VALUE; echo err >&2; exit 3".into(),
        ];
        let compiled = compile(&chain, &args, |_| true).unwrap();
        assert_eq!(
            compiled.stdout, b"out set\n",
            "the chain's env reaches the program"
        );
        assert_eq!(compiled.stderr, b"err\n");
        assert_eq!(exit_code(compiled.status), 3);
    }
}
