//! The interactive shell on a terminal: line editing, history kept in
//! `~/.sercmd_history` (best effort) and Tab completion of command names:
//! the server's methods (listed once at start), aliases and built-ins.

use std::path::PathBuf;

use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{CompletionType, Config, Context, Editor, Helper};

/// Lines kept in the history file.
const HISTORY_LINES: usize = 1000;

/// What the shell does after a command.
pub enum Step {
    Continue,
    Quit,
}

/// Completes a command name: the first word of a line, and the word after
/// `help` (or `?`).
pub struct Commands {
    names: Vec<String>,
}

impl Commands {
    pub fn new(mut names: Vec<String>) -> Commands {
        names.sort();
        names.dedup();
        Commands { names }
    }

    /// Where the word under the cursor starts, and the names it may become.
    fn candidates(&self, line: &str, pos: usize) -> (usize, Vec<String>) {
        let head = line.get(..pos).unwrap_or(line);
        // ASCII whitespace is one byte, so `i + 1` is a char boundary.
        let start = head
            .rfind(|c: char| c.is_ascii_whitespace())
            .map_or(0, |i| i + 1);
        let before: Vec<&str> = head[..start].split_whitespace().collect();
        if !matches!(before.as_slice(), [] | ["help" | "?"]) {
            return (start, Vec::new());
        }
        let word = &head[start..];
        let found = self
            .names
            .iter()
            .filter(|n| n.starts_with(word))
            .cloned()
            .collect();
        (start, found)
    }
}

impl Completer for Commands {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        Ok(self.candidates(line, pos))
    }
}

impl Hinter for Commands {
    type Hint = String;
}
impl Highlighter for Commands {}
impl Validator for Commands {}
impl Helper for Commands {}

fn history_file() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".sercmd_history"))
}

/// Reads lines until `quit`, Ctrl-D or an error; runs each one's words with
/// `exec`. Ctrl-C abandons the line being typed.
pub fn run(
    prompt: &str,
    names: Vec<String>,
    mut exec: impl FnMut(&[String]) -> Step,
) -> Result<(), ReadlineError> {
    let config = Config::builder()
        .max_history_size(HISTORY_LINES)?
        .completion_type(CompletionType::List)
        .auto_add_history(false)
        .build();
    let mut rl: Editor<Commands, DefaultHistory> = Editor::with_config(config)?;
    rl.set_helper(Some(Commands::new(names)));
    let history = history_file();
    if let Some(h) = &history {
        // A missing or unreadable history is not an error.
        let _ = rl.load_history(h);
    }
    let result = loop {
        match rl.readline(prompt) {
            Ok(line) => {
                let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
                if words.is_empty() {
                    continue;
                }
                let _ = rl.add_history_entry(line.trim());
                if let Step::Quit = exec(&words) {
                    break Ok(());
                }
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    if let Some(h) = &history {
        if let Err(e) = rl.save_history(h) {
            eprintln!("WARNING: cannot save the history in {}: {e}", h.display());
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commands() -> Commands {
        Commands::new(
            ["core.uptime", "core.ps", "core.psx", "help", "quit", "ls"]
                .map(String::from)
                .to_vec(),
        )
    }

    #[test]
    fn completes_the_command_word() {
        let c = commands();
        assert_eq!(c.candidates("core.up", 7), (0, vec!["core.uptime".into()]));
        assert_eq!(
            c.candidates("core.p", 6),
            (0, vec!["core.ps".into(), "core.psx".into()])
        );
        assert_eq!(c.candidates("  q", 3), (2, vec!["quit".into()]));
    }

    #[test]
    fn completes_after_help_only() {
        let c = commands();
        assert_eq!(
            c.candidates("help core.up", 12),
            (5, vec!["core.uptime".into()])
        );
        assert_eq!(c.candidates("core.ps core.up", 15), (8, Vec::new()));
    }
}
