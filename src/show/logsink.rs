//! Where log lines go: stderr, except while the dashboard owns the terminal. A line written to
//! the terminal then would draw over the dashboard's panels and stay there, so meanwhile lines
//! go to a file, and the user is told afterwards how many went where.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

struct Diverted {
    file: File,
    path: PathBuf,
    lines: u64,
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
                d.lines += buf.iter().filter(|&&b| b == b'\n').count() as u64;
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

/// Sends log lines to `path` (appending) until [`restore`].
pub fn divert(path: &Path) -> io::Result<()> {
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    if file.metadata()?.len() == 0 {
        // What lets `cleanup` tell this file from someone else's of the same name.
        file.write_all(crate::run_id::log_header().as_bytes())?;
    }
    *DIVERTED.lock().unwrap_or_else(|p| p.into_inner()) = Some(Diverted {
        file,
        path: path.to_owned(),
        lines: 0,
    });
    Ok(())
}

/// Sends log lines to stderr again. Returns the file and how many lines went there.
pub fn restore() -> Option<(PathBuf, u64)> {
    DIVERTED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .map(|d| (d.path, d.lines))
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
