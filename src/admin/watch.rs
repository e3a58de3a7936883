//! `sluice status --watch`: the table again every interval until Ctrl-C,
//! like `kubectl get -w`. On a terminal each refresh redraws the screen in
//! place; into a pipe or a file each refresh is a new table after a blank
//! line. A gateway that cannot be read is said in the table's place (on
//! stderr when not a terminal) and asked again at the next refresh.

use super::{fetch_status, Status, StatusError};
use std::io::{IsTerminal, Write};
use std::time::{Duration, SystemTime};

/// ANSI: cursor home, then clear the screen.
const CLEAR: &str = "\x1b[H\x1b[2J";

/// Refreshes `table` of the gateway at `admin` every `interval` until
/// Ctrl-C (or until stdout is closed). Fails only if Ctrl-C cannot be
/// listened for.
pub async fn watch(
    admin: &str,
    table: fn(&Status) -> String,
    interval: Duration,
) -> std::io::Result<()> {
    let terminal = std::io::stdout().is_terminal();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    let mut first = true;
    loop {
        tokio::select! {
            stopped = &mut stop => return stopped,
            _ = ticks.tick() => {}
        }
        // A gateway that accepts and never answers is an error too.
        let asked = tokio::time::timeout(interval.max(Duration::from_secs(5)), fetch_status(admin));
        let read = tokio::select! {
            stopped = &mut stop => return stopped,
            read = asked => read.unwrap_or_else(|_| Err(StatusError::NoAnswer { admin: admin.into() })),
        };
        let frame = Frame {
            admin,
            interval,
            terminal,
            first,
        };
        let (out, err) = frame.render(read.as_ref().map(table));
        if write_all(&mut std::io::stdout(), &out).is_err() {
            // The reader went away (`| head`): nothing more to show.
            return Ok(());
        }
        if !err.is_empty() {
            let _ = write_all(&mut std::io::stderr(), &err);
        }
        first = false;
    }
}

/// One refresh, as text for stdout and for stderr.
struct Frame<'a> {
    admin: &'a str,
    interval: Duration,
    terminal: bool,
    first: bool,
}

impl Frame<'_> {
    fn render(&self, read: Result<String, &StatusError>) -> (String, String) {
        if self.terminal {
            let now = humantime::format_rfc3339_seconds(SystemTime::now());
            let every = humantime::format_duration(self.interval);
            let mut screen = format!(
                "{CLEAR}Every {every}: sluice status --admin {} (Ctrl-C to stop)    {now}\n\n",
                self.admin
            );
            match read {
                Ok(table) => screen.push_str(&table),
                Err(error) => screen.push_str(&format!("{error}\nretrying every {every}\n")),
            }
            return (screen, String::new());
        }
        let separator = if self.first { "" } else { "\n" };
        match read {
            Ok(table) => (format!("{separator}{table}"), String::new()),
            Err(error) => (String::new(), format!("sluice status: {error}; retrying\n")),
        }
    }
}

fn write_all(out: &mut impl Write, text: &str) -> std::io::Result<()> {
    out.write_all(text.as_bytes())?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(terminal: bool, first: bool) -> Frame<'static> {
        Frame {
            admin: "127.0.0.1:9091",
            interval: Duration::from_secs(1),
            terminal,
            first,
        }
    }

    #[test]
    fn on_a_terminal_each_refresh_clears_the_screen_and_redraws() {
        let (out, err) = frame(true, false).render(Ok("NAME\nm\n".into()));
        assert!(out.starts_with(CLEAR), "{out:?}");
        assert!(out.contains("Every 1s: sluice status --admin 127.0.0.1:9091"));
        assert!(out.ends_with("\n\nNAME\nm\n"), "{out:?}");
        assert!(err.is_empty());

        let error = StatusError::NoAnswer {
            admin: "127.0.0.1:9091".into(),
        };
        let (out, err) = frame(true, false).render(Err(&error));
        assert!(out.starts_with(CLEAR));
        assert!(
            out.contains("no answer from the gateway's admin at 127.0.0.1:9091"),
            "{out}"
        );
        assert!(out.contains("retrying every 1s"), "{out}");
        assert!(err.is_empty(), "on a terminal the error is drawn in place");
    }

    #[test]
    fn into_a_pipe_each_refresh_is_a_table_after_a_blank_line() {
        assert_eq!(
            frame(false, true).render(Ok("T\n".into())),
            ("T\n".into(), "".into())
        );
        assert_eq!(
            frame(false, false).render(Ok("T\n".into())),
            ("\nT\n".into(), "".into())
        );
        let error = StatusError::NoAnswer {
            admin: "a:1".into(),
        };
        let (out, err) = frame(false, false).render(Err(&error));
        assert_eq!(out, "", "stdout keeps only tables");
        assert!(
            err.contains("no answer") && err.ends_with("retrying\n"),
            "{err}"
        );
    }
}
