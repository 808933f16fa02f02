//! Owning the terminal: raw mode, the alternate screen and mouse capture on entry, and their
//! restoration on every exit path — normal return, error, and panic (a hook restores the
//! terminal before the panic message is printed, so the message is readable and the shell
//! usable).
//!
//! While the UI runs, stderr (where flywheel's logs go) points at a log file: a log line
//! written to the terminal would tear the screen. The file is named in the help screen.

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Mutex;

use crossterm::event::{DisableMouseCapture, EnableMouseCapture};
use crossterm::execute;
use crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

/// The original stderr while it is redirected, to put back exactly once.
static SAVED_STDERR: Mutex<Option<i32>> = Mutex::new(None);

/// Where logs go while the UI runs.
pub fn log_path() -> PathBuf {
    std::env::temp_dir().join("flywheel-tui.log")
}

/// The terminal, restored when dropped.
pub struct Session {
    pub terminal: Terminal<CrosstermBackend<io::Stdout>>,
}

impl Session {
    pub fn enter() -> io::Result<Session> {
        // Checked before anything changes: without a terminal, raw mode fails, and the error
        // went to the log file stderr had been redirected to — nothing on screen.
        check()?;
        install_panic_hook();
        redirect_stderr();
        if let Err(e) = enable_raw_mode() {
            restore();
            return Err(e);
        }
        let mut stdout = io::stdout();
        if let Err(e) = execute!(stdout, EnterAlternateScreen, EnableMouseCapture) {
            restore();
            return Err(e);
        }
        match Terminal::new(CrosstermBackend::new(stdout)) {
            Ok(terminal) => Ok(Session { terminal }),
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.terminal.show_cursor();
        restore();
    }
}

/// Whether the UI can run here: standard input and output must be a terminal.
pub fn check() -> io::Result<()> {
    use std::io::IsTerminal;
    if io::stdin().is_terminal() && io::stdout().is_terminal() {
        return Ok(());
    }
    Err(io::Error::other(
        "flywheel tui needs a terminal (standard input and output are not one); in scripts use `flywheel patterns` or `flywheel report`",
    ))
}

/// Leaves raw mode and the alternate screen and gives stderr back. Safe to call twice.
pub fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(io::stdout(), DisableMouseCapture, LeaveAlternateScreen, crossterm::cursor::Show);
    let _ = io::stdout().flush();
    restore_stderr();
}

fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

fn redirect_stderr() {
    let Ok(file) = std::fs::OpenOptions::new().create(true).append(true).open(log_path()) else { return };
    let mut saved = SAVED_STDERR.lock().unwrap_or_else(|e| e.into_inner());
    if saved.is_some() {
        return;
    }
    // SAFETY: dup/dup2 on valid descriptors; the duplicate of stderr is kept until restored.
    unsafe {
        let copy = libc::dup(2);
        if copy >= 0 && libc::dup2(file.as_raw_fd(), 2) >= 0 {
            *saved = Some(copy);
        } else if copy >= 0 {
            libc::close(copy);
        }
    }
}

fn restore_stderr() {
    let mut saved = SAVED_STDERR.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(fd) = saved.take() {
        // SAFETY: `fd` is our duplicate of the original stderr.
        unsafe {
            libc::dup2(fd, 2);
            libc::close(fd);
        }
    }
}

/// The OSC 52 sequence that asks the terminal to put `text` on the system clipboard (works over
/// SSH and in tmux with `set-clipboard on`).
pub fn osc52(text: &str) -> String {
    format!("\x1b]52;c;{}\x07", base64(text.as_bytes()))
}

pub fn copy_to_clipboard(text: &str) -> io::Result<()> {
    let mut out = io::stdout();
    out.write_all(osc52(text).as_bytes())?;
    out.flush()
}

fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn osc52_encodes_base64() {
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(super::osc52("hi"), "\x1b]52;c;aGk=\x07");
    }
}
