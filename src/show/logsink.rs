//! Where log lines go: stderr, except while the dashboard owns the terminal. A line written to
//! the terminal then would draw over the dashboard's panels and stay there, so meanwhile lines
//! go to a file, and the user is told afterwards how many went where. Not only pipedemo's own
//! log lines: the process's stderr itself (file descriptor 2) points at the file, so that
//! whatever else writes there (librdkafka, a library's warning, a message from a panic
//! before the terminal is restored) cannot draw over the panels either.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

struct Diverted {
    file: File,
    path: PathBuf,
    /// The file's length when diverted: what was written since is the dashboard's.
    start: u64,
    /// The terminal's stderr, to put back.
    saved_stderr: Option<std::os::fd::OwnedFd>,
}

static DIVERTED: Mutex<Option<Diverted>> = Mutex::new(None);

/// The writer handed to `tracing_subscriber` (`.with_writer(logsink::Writer::default)`).
#[derive(Default)]
pub struct Writer;

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut d = DIVERTED.lock().unwrap_or_else(|p| p.into_inner());
        match d.as_mut() {
            Some(d) => {
                d.file.write_all(&strip_ansi(buf))?;
                Ok(buf.len())
            }
            None => io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match DIVERTED.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            Some(d) => d.file.flush(),
            None => io::stderr().flush(),
        }
    }
}

/// Sends pipedemo's log lines to `path` (appending) until [`restore`], from before the run
/// starts when a dashboard will show it: a line logged while the services are set up could
/// otherwise be left on the screen the dashboard draws on. The terminal's own stderr stays
/// (setup's progress lines are for people).
pub fn hold(path: &Path) -> io::Result<()> {
    let mut d = DIVERTED.lock().unwrap_or_else(|p| p.into_inner());
    if d.is_none() {
        *d = Some(open(path)?);
    }
    Ok(())
}

fn open(path: &Path) -> io::Result<Diverted> {
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    if file.metadata()?.len() == 0 {
        // What lets `cleanup` tell this file from someone else's of the same name.
        file.write_all(crate::run_id::log_header().as_bytes())?;
    }
    let start = file.metadata()?.len();
    Ok(Diverted {
        file,
        path: path.to_owned(),
        start,
        saved_stderr: None,
    })
}

/// Sends log lines to `path` (appending), and points the process's stderr there too, until
/// [`restore`].
pub fn divert(path: &Path) -> io::Result<()> {
    {
        let mut guard = DIVERTED.lock().unwrap_or_else(|p| p.into_inner());
        let d = match guard.take() {
            Some(d) => d,
            None => open(path)?,
        };
        let d = guard.insert(d);
        if d.saved_stderr.is_none() {
            d.saved_stderr = point_stderr_at(&d.file);
        }
    }
    static PANIC_HOOK: std::sync::Once = std::sync::Once::new();
    PANIC_HOOK.call_once(|| {
        // A panic's message belongs on the terminal: put stderr back before it is printed
        // (try_lock: the panic may come from inside `Writer::write`).
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Ok(mut d) = DIVERTED.try_lock() {
                if let Some(saved) = d.as_mut().and_then(|d| d.saved_stderr.take()) {
                    put_back(&saved);
                }
            }
            previous(info);
        }));
    });
    Ok(())
}

/// Points file descriptor 2 at `file`; returns the old one (none when that failed: the log
/// lines still go to the file through [`Writer`]).
fn point_stderr_at(file: &File) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::{AsFd, AsRawFd, FromRawFd};
    let _ = io::stderr().flush();
    // SAFETY: dup and dup2 on descriptors this process owns; the duplicate is owned here.
    unsafe {
        let saved = libc::dup(io::stderr().as_fd().as_raw_fd());
        if saved < 0 {
            return None;
        }
        if libc::dup2(file.as_raw_fd(), libc::STDERR_FILENO) < 0 {
            libc::close(saved);
            return None;
        }
        Some(std::os::fd::OwnedFd::from_raw_fd(saved))
    }
}

/// Points file descriptor 2 at `saved` again.
fn put_back(saved: &std::os::fd::OwnedFd) {
    use std::os::fd::AsRawFd;
    // SAFETY: dup2 onto stderr of a descriptor this process owns.
    unsafe {
        libc::dup2(saved.as_raw_fd(), libc::STDERR_FILENO);
    }
}

/// Sends log lines to stderr again. Returns the file and how many lines went there while
/// diverted.
pub fn restore() -> Option<(PathBuf, u64)> {
    let d = DIVERTED.lock().unwrap_or_else(|p| p.into_inner()).take()?;
    if let Some(saved) = &d.saved_stderr {
        put_back(saved);
    }
    let lines = std::fs::read(&d.path)
        .map(|b| {
            b.get(d.start as usize..)
                .unwrap_or_default()
                .iter()
                .filter(|&&c| c == b'\n')
                .count() as u64
        })
        .unwrap_or(0);
    Some((d.path, lines))
}

/// Colour codes belong to terminals, not files.
fn strip_ansi(buf: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(buf.len());
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == 0x1b && buf.get(i + 1) == Some(&b'[') {
            i += 2;
            while i < buf.len() && !buf[i].is_ascii_alphabetic() {
                i += 1;
            }
            i += 1;
        } else {
            out.push(buf[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_go_to_the_file_while_diverted_without_colour_codes() {
        let path = std::env::temp_dir().join(format!("pipedemo-logsink-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        divert(&path).unwrap();
        Writer
            .write_all(b"\x1b[2m2026\x1b[0m \x1b[33m WARN\x1b[0m MongoDB unavailable\n")
            .unwrap();
        Writer.write_all(b"second\n").unwrap();
        let (p, lines) = restore().unwrap();
        assert_eq!((p.as_path(), lines), (path.as_path(), 2));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!(
                "{}2026  WARN MongoDB unavailable\nsecond\n",
                crate::run_id::log_header()
            )
        );
        assert!(restore().is_none());
        std::fs::remove_file(path).unwrap();
    }
}
