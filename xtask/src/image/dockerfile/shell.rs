//! BuildKit's shell lexer (frontend/dockerfile/shell/lex.go): expansion and quoting of Dockerfile words.
//!
//! A port of `shell.Lex` from moby/buildkit (commit 73ed6825c4b7, built with Go 1.26, whose `unicode`
//! tables are Unicode 15.0.0). BuildKit's behaviour is the specification, quirks included, so that a
//! Dockerfile means here what it means to `docker build`; each quirk kept on purpose says so where it
//! happens. Errors carry BuildKit's messages word for word. One departure: the words of `${...}`
//! references nest at most [`MAX_REFERENCE_DEPTH`] deep, where BuildKit has no limit.
//!
//! How BuildKit's Dockerfile frontend calls the lexer (dockerfile2llb, instructions and parser):
//!
//! - [`Lex::new`] with the `# escape=` token and no option is the frontend's one lexer:
//!   - `ProcessWordWithMatches`, against the global ARGs (those before the first FROM): FROM's
//!     image and `--platform`, and the defaults of those global ARGs themselves (each sees the ones
//!     before it). Its word is [`Lex::process_word`]'s; the names it also returns, matched and
//!     unmatched, only feed BuildKit's lints, which are not ported. `COPY --from` goes through it
//!     with no variables at all, and is refused if that changes the word.
//!   - [`Lex::process_word`], against the stage's environment (its ENV and ARGs): the keys and
//!     values of ENV and LABEL; ADD's `--chown`, `--chmod`, `--checksum`, sources and destination;
//!     COPY's `--chown`, `--chmod`, sources and destination; WORKDIR, USER, VOLUME and STOPSIGNAL;
//!     the values of `RUN --mount` options; an ARG's default inside a stage; and, against the global
//!     ARGs, the SOURCE_DATE_EPOCH source stage (its FROM, ARG defaults, ADD source and checksum).
//!     BuildKit's `ProcessWord` also returns the unmatched names, for the UndefinedVar lint on these
//!     instructions, which is not ported.
//!   - [`Lex::process_words`], against the stage's environment: each EXPOSE argument, which may
//!     expand to several ports.
//! - The same lexer with [`Lex::raw_quotes`] and [`Lex::skip_unset_env`]: the step name shown for
//!   a RUN (an error there leaves the command text as written).
//! - `Lex::new('\\')` with [`Lex::skip_process_quotes`], whatever the escape directive says: the
//!   contents of an ADD or COPY heredoc whose delimiter is unquoted (quotes in the contents stay).
//! - The parser, `Lex::new('\\')` with no variables and [`Lex::skip_unset_env`]: a heredoc
//!   delimiter is split with [`Lex::process_words`] once plain and once with [`Lex::raw_quotes`];
//!   if the two differ in their count of quote characters the delimiter was quoted and the contents
//!   are not expanded (the instructions layer reads the heredoc sources of COPY and ADD the same
//!   way). Heredocs are found in an instruction line by [`Lex::process_words`] with
//!   [`Lex::raw_quotes`], [`Lex::raw_escapes`] and [`Lex::skip_unset_env`], errors ignored.
//!
//! The commands of RUN, CMD, ENTRYPOINT and HEALTHCHECK, and SHELL, MAINTAINER and ONBUILD, are not
//! expanded by BuildKit: a shell does that, if any, when they run.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt;
use std::iter::{once, Peekable};
use std::mem;
use std::str::Chars;

use super::go::go_quote;

/// Expands and unquotes Dockerfile words as BuildKit does.
#[derive(Debug, Clone)]
pub struct Lex {
    escape: char,
    raw_quotes: bool,
    raw_escapes: bool,
    skip_process_quotes: bool,
    skip_unset_env: bool,
    empty_quoted_words: bool,
}

/// What is wrong with a word, in BuildKit's words: `failed to process "<word>": <reason>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellError(pub String);

impl fmt::Display for ShellError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ShellError {}

/// A variable's value: `Some` when it is set, even to the empty string.
type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

const MISSING_BRACE: &str = "syntax error: missing '}'";

/// How deep the words of `${...}` references (`${a:-${b:-...}}`) may nest. BuildKit has no limit (Go's
/// stacks grow); past this depth, far beyond any real Dockerfile, the word is refused with an error rather
/// than exhaust the stack, so that, say, such a line opens no heredoc.
pub(super) const MAX_REFERENCE_DEPTH: usize = 100;

impl Lex {
    /// A lexer whose escape character is `escape`: `\` unless the `# escape=` directive says `` ` ``.
    pub fn new(escape: char) -> Lex {
        Lex { escape, raw_quotes: false, raw_escapes: false, skip_process_quotes: false, skip_unset_env: false, empty_quoted_words: false }
    }

    /// The escape character.
    pub fn escape(&self) -> char {
        self.escape
    }

    /// BuildKit's `RawQuotes`: quotes still group and protect, but stay in the output.
    pub fn raw_quotes(mut self, on: bool) -> Lex {
        self.raw_quotes = on;
        self
    }

    /// BuildKit's `RawEscapes`: escape characters still protect, but stay in the output.
    pub fn raw_escapes(mut self, on: bool) -> Lex {
        self.raw_escapes = on;
        self
    }

    /// BuildKit's `SkipProcessQuotes`: quotes are ordinary characters (heredoc contents).
    pub fn skip_process_quotes(mut self, on: bool) -> Lex {
        self.skip_process_quotes = on;
        self
    }

    /// BuildKit's `SkipUnsetEnv`: a reference to an unset variable is left as written (`$X`,
    /// `${X}`, `${X:-word}` with `word` expanded), instead of expanding to nothing.
    pub fn skip_unset_env(mut self, on: bool) -> Lex {
        self.skip_unset_env = on;
        self
    }

    /// Not BuildKit's: words split as `/bin/sh` splits a RUN line, where quotes with nothing in
    /// them (`""`, `"$EMPTY"`) still make a word, an empty one. BuildKit's `ProcessWords` drops
    /// it (it splits an instruction's arguments, where an empty one means nothing).
    pub fn keep_empty_quoted_words(mut self, on: bool) -> Lex {
        self.empty_quoted_words = on;
        self
    }

    /// BuildKit's `ProcessWord`: `word` with its variables expanded and its quotes and escapes removed.
    pub fn process_word(&self, word: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, ShellError> {
        self.process(word, env).map(|expansion| expansion.result)
    }

    /// BuildKit's `ProcessWords`: `word` expanded, then split on the whitespace that is neither quoted,
    /// escaped nor right after `<<`. Whitespace that comes from a variable's value splits too.
    pub fn process_words(&self, word: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<String>, ShellError> {
        self.process(word, env).map(|expansion| expansion.words)
    }

    fn process(&self, word: &str, env: Env<'_>) -> Result<Expansion, ShellError> {
        let mut shell_word = ShellWord {
            lex: self,
            scanner: scanner(word),
            env,
            raw_escapes: self.raw_escapes,
            words_buffer: String::new(),
            word_quoted: false,
            depth: 0,
        };
        let (result, words) = shell_word
            .process_stop_on(None, self.raw_escapes)
            .map_err(|reason| ShellError(format!("failed to process {}: {reason}", go_quote(word))))?;
        Ok(Expansion { result, words })
    }
}

struct Expansion {
    result: String,
    words: Vec<String>,
}

type Scanner<'a> = Peekable<Chars<'a>>;

/// Reads `text` a character at a time as Go's `text/scanner` does for BuildKit, which skips one
/// leading byte-order mark.
fn scanner(text: &str) -> Scanner<'_> {
    text.strip_prefix('\u{FEFF}').unwrap_or(text).chars().peekable()
}

/// Go turns its end-of-input rune (-1) into U+FFFD when BuildKit prints it in a message.
fn go_rune(ch: Option<char>) -> char {
    ch.unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// One word being processed: BuildKit's `shellWord`.
struct ShellWord<'a> {
    lex: &'a Lex,
    scanner: Scanner<'a>,
    env: Env<'a>,
    /// Whether escape characters are kept, which `${VAR#pattern}` and `${VAR/pattern/string}` turn on
    /// for their pattern (whatever the option says) and `${VAR:-word}` and the like turn off.
    raw_escapes: bool,
    /// The word being gathered for `process_words`. As in BuildKit, the nested `process_stop_on` that
    /// reads the `word` of `${VAR:-word}` (and the like) shares it and ends that word at its closing
    /// `}`, so what came before such an expansion in the same word is lost: `a${X:-b}` splits into
    /// `b`, not `ab`.
    words_buffer: String,
    /// Whether the word being gathered has quotes, which make it a word even when empty
    /// ([`Lex::keep_empty_quoted_words`]).
    word_quoted: bool,
    /// How many `${...}` words enclose the reader.
    depth: usize,
}

impl ShellWord<'_> {
    /// Processes up to the end of the input, or up to and including `stop`, which must then come.
    /// Returns the processed text and its split into words.
    /// A `stop` means a word inside `${...}`, which may nest only [`MAX_REFERENCE_DEPTH`] deep.
    fn process_stop_on(&mut self, stop: Option<char>, raw_escapes: bool) -> Result<(String, Vec<String>), String> {
        let nested = stop.is_some();
        if nested {
            if self.depth == MAX_REFERENCE_DEPTH {
                return Err("variable references nested too deeply".to_owned());
            }
            self.depth += 1;
        }
        let outer = mem::replace(&mut self.raw_escapes, raw_escapes);
        let processed = self.scan(stop);
        self.raw_escapes = outer;
        self.depth -= usize::from(nested);
        processed
    }

    fn scan(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), String> {
        let mut result = String::new();
        let mut words = Vec::new();
        while let Some(&ch) = self.scanner.peek() {
            if Some(ch) == stop {
                self.scanner.next();
                self.end_word(&mut words);
                return Ok((result, words));
            }
            let special = match ch {
                '$' => Some(self.process_dollar()?),
                '<' => Some(self.process_possible_heredoc()),
                '\'' if !self.lex.skip_process_quotes => Some(self.process_single_quote()?),
                '"' if !self.lex.skip_process_quotes => Some(self.process_double_quote()?),
                _ => None,
            };
            if let Some(text) = special {
                result.push_str(&text);
                if ch == '$' {
                    for ch in text.chars() {
                        self.add_to_words(&mut words, ch);
                    }
                } else {
                    self.words_buffer.push_str(&text);
                    self.word_quoted |= self.lex.empty_quoted_words && matches!(ch, '\'' | '"');
                }
                continue;
            }
            self.scanner.next();
            if ch == self.lex.escape {
                if self.raw_escapes {
                    self.words_buffer.push(ch);
                    result.push(ch);
                }
                // An escape at the very end escapes nothing and disappears.
                let Some(escaped) = self.scanner.next() else { break };
                self.words_buffer.push(escaped);
                result.push(escaped);
            } else {
                self.add_to_words(&mut words, ch);
                result.push(ch);
            }
        }
        if let Some(stop) = stop {
            return Err(format!("unexpected end of statement while looking for matching {stop}"));
        }
        self.end_word(&mut words);
        Ok((result, words))
    }

    /// Ends the word being gathered: a word when it has characters, or quotes.
    fn end_word(&mut self, words: &mut Vec<String>) {
        let quoted = mem::take(&mut self.word_quoted);
        if !self.words_buffer.is_empty() || quoted {
            words.push(mem::take(&mut self.words_buffer));
        }
    }

    /// Adds an unprotected character to the words: whitespace ends the current word.
    fn add_to_words(&mut self, words: &mut Vec<String>, ch: char) {
        if ch.is_whitespace() {
            self.end_word(words);
        } else {
            self.words_buffer.push(ch);
        }
    }

    /// Everything up to the closing `'` as it is: nothing escapes inside single quotes.
    fn process_single_quote(&mut self) -> Result<String, String> {
        let mut result = String::new();
        self.scanner.next();
        if self.lex.raw_quotes {
            result.push('\'');
        }
        loop {
            match self.scanner.next() {
                None => return Err("unexpected end of statement while looking for matching single-quote".to_owned()),
                Some('\'') => {
                    if self.lex.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(ch) => result.push(ch),
            }
        }
    }

    /// Everything up to the closing `"` with variables expanded. The escape character only escapes
    /// `"`, `$` and itself there; before anything else it stays, as in sh.
    fn process_double_quote(&mut self) -> Result<String, String> {
        let mut result = String::new();
        self.scanner.next();
        if self.lex.raw_quotes {
            result.push('"');
        }
        loop {
            match self.scanner.peek() {
                None => return Err("unexpected end of statement while looking for matching double-quote".to_owned()),
                Some('"') => {
                    self.scanner.next();
                    if self.lex.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                }
                Some(&ch) => {
                    self.scanner.next();
                    let mut ch = ch;
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.scanner.peek() {
                            // The next round reports the missing closing quote.
                            None => continue,
                            Some(&next) if next == '"' || next == '$' || next == self.lex.escape => {
                                self.scanner.next();
                                ch = next;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    /// A `$` reference, the `$` being next.
    fn process_dollar(&mut self) -> Result<String, String> {
        self.scanner.next();
        if self.scanner.peek() != Some(&'{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_owned());
            }
            return Ok(match self.get_env(&name) {
                Some(value) => value,
                None if self.lex.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.scanner.next();
        match self.scanner.peek() {
            None => return Err(MISSING_BRACE.to_owned()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".to_owned()),
            Some(_) => {}
        }
        let name = self.process_name();
        match self.scanner.next() {
            Some('}') => Ok(match self.get_env(&name) {
                Some(value) => value,
                None if self.lex.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(':') => {
                let modifier = self.scanner.next();
                self.process_modifier(&name, modifier, true)
            }
            Some(modifier @ ('+' | '-' | '?' | '#' | '%')) => self.process_modifier(&name, Some(modifier), false),
            Some('/') => self.process_substitution(&name),
            other => Err(unsupported_modifier(&go_rune(other).to_string())),
        }
    }

    /// `${name-word}`, `${name+word}`, `${name?word}`, `${name#pattern}` and `${name%pattern}`, or with
    /// `null_is_unset` the same after a `:` (which `#` and `%` do not take), where an empty value
    /// counts as unset. Any other `modifier` after a `:` is refused once its word has been read.
    fn process_modifier(&mut self, name: &str, modifier: Option<char>, null_is_unset: bool) -> Result<String, String> {
        let spelled = if null_is_unset { format!(":{}", go_rune(modifier)) } else { go_rune(modifier).to_string() };
        let is_pattern = matches!(modifier, Some('#' | '%'));
        if null_is_unset && is_pattern {
            return Err(unsupported_modifier(&spelled));
        }
        let word = match self.process_stop_on(Some('}'), is_pattern) {
            Ok((word, _)) => word,
            Err(reason) => return Err(self.at_end_or(reason, MISSING_BRACE)),
        };
        let value = self.get_env(name);
        if self.lex.skip_unset_env && value.is_none() {
            return Ok(format!("${{{name}{spelled}{word}}}"));
        }
        let set = value.is_some();
        let value = value.unwrap_or_default();
        let unset = !set || (null_is_unset && value.is_empty());
        match modifier {
            Some('-') => Ok(if unset { word } else { value }),
            Some('+') => Ok(if unset { String::new() } else { word }),
            Some('?') if !set => Err(format!("{name}: {}", if word.is_empty() { "is not allowed to be unset" } else { &word })),
            Some('?') if unset => Err(format!("{name}: {}", if word.is_empty() { "is not allowed to be empty" } else { &word })),
            Some('?') => Ok(value),
            Some(op @ ('#' | '%')) => {
                // A doubled `##` or `%%` removes the longest match instead of the shortest.
                let (pattern, greedy) = match word.strip_prefix(op) {
                    Some(pattern) => (pattern, true),
                    None => (word.as_str(), false),
                };
                if op == '%' {
                    trim_suffix(pattern, &value, greedy)
                } else {
                    trim_prefix(pattern, &value, greedy)
                }
            }
            _ => Err(unsupported_modifier(&spelled)),
        }
    }

    /// `${name/pattern/string}` (first match) and `${name//pattern/string}` (every match), the first
    /// `/` having been read.
    fn process_substitution(&mut self, name: &str) -> Result<String, String> {
        let replace_all = self.scanner.next_if_eq(&'/').is_some();
        let pattern = match self.process_stop_on(Some('/'), true) {
            Ok((pattern, _)) => pattern,
            Err(reason) => return Err(self.at_end_or(reason, "syntax error: missing '/' in ${}")),
        };
        let replacement = match self.process_stop_on(Some('}'), true) {
            Ok((replacement, _)) => replacement,
            Err(reason) => return Err(self.at_end_or(reason, MISSING_BRACE)),
        };
        let value = self.get_env(name);
        if self.lex.skip_unset_env && value.is_none() {
            // As BuildKit writes it back, with one `/` even when there were two.
            return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
        }
        let value = value.unwrap_or_default();
        let compiled = Pattern::compile(&pattern, true, false).map_err(|reason| invalid_pattern(&pattern, &reason))?;
        if replace_all {
            return Ok(compiled.replace_all(&value, &replacement));
        }
        Ok(match compiled.find_at(&value, 0) {
            Some((start, end)) => format!("{}{replacement}{}", &value[..start], &value[end..]),
            None => value,
        })
    }

    /// A failure inside a modifier's word is reported as the missing delimiter when the input ran out.
    fn at_end_or(&mut self, reason: String, missing: &str) -> String {
        if self.scanner.peek().is_none() {
            missing.to_owned()
        } else {
            reason
        }
    }

    /// A variable name: letters, digits and `_`; or a run of digits (positional parameters); or one
    /// special parameter character. Empty when none of these comes next.
    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(&ch) = self.scanner.peek() {
            if name.is_empty() && is_digit(ch) {
                while let Some(digit) = self.scanner.next_if(|&ch| is_digit(ch)) {
                    name.push(digit);
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.scanner.next();
                return ch.to_string();
            }
            if !is_letter(ch) && !is_digit(ch) && ch != '_' {
                break;
            }
            self.scanner.next();
            name.push(ch);
        }
        name
    }

    /// `<<` and the blanks after it stay together in one word, so that a heredoc delimiter can be
    /// written `<< EOF`; a single `<` is an ordinary character.
    fn process_possible_heredoc(&mut self) -> String {
        self.scanner.next();
        if self.scanner.next_if_eq(&'<').is_none() {
            return "<".to_owned();
        }
        let mut result = "<<".to_owned();
        while let Some(blank) = self.scanner.next_if(|&ch| matches!(ch, '\t' | '\r' | ' ')) {
            result.push(blank);
        }
        result
    }

    fn get_env(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }
}

fn unsupported_modifier(spelled: &str) -> String {
    format!("unsupported modifier ({spelled}) in substitution")
}

fn invalid_pattern(pattern: &str, reason: &str) -> String {
    format!("invalid pattern ({pattern}) in substitution: {reason}")
}

/// `${VAR#pattern}`: `value` without the shortest (or with `greedy` the longest) prefix matching `pattern`.
fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, String> {
    let compiled = Pattern::compile(pattern, greedy, true).map_err(|reason| invalid_pattern(pattern, &reason))?;
    Ok(match compiled.find_at(value, 0) {
        Some((_, end)) => value[end..].to_owned(),
        None => value.to_owned(),
    })
}

/// `${VAR%pattern}`: the suffix is trimmed as a prefix of both strings reversed, as BuildKit does,
/// so a pattern error names the pattern reversed.
fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, String> {
    trim_prefix(&reverse_pattern(pattern), &reversed(value), greedy).map(|trimmed| reversed(&trimmed))
}

fn reversed(text: &str) -> String {
    text.chars().rev().collect()
}

/// Reverses a pattern keeping each escape before the character it escapes: `a\*c` becomes `c\*a`.
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = chars.clone();
    let last = chars.len().saturating_sub(1);
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\' && i != last {
            out[last - i - 1] = '\\';
            out[last - i] = chars[i + 1];
            i += 2;
        } else {
            out[last - i] = chars[i];
            i += 1;
        }
    }
    out.into_iter().collect()
}

/// One element of a compiled pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// That character, written plain or escaped.
    Char(char),
    /// `?`: one character other than a newline.
    AnyChar,
    /// `*`: any run of characters other than newlines.
    AnyRun,
}

/// A shell wildcard pattern (`*`, `?` and `\` escapes, no brackets), matched as the Go regular
/// expression BuildKit turns it into: `.*` (greedy) or `.*?` for `*`, `.` for `?`, so that neither
/// crosses a newline, and leftmost-first matches as a backtracking matcher finds them.
struct Pattern {
    tokens: Vec<Token>,
    greedy: bool,
    anchored: bool,
}

impl Pattern {
    /// BuildKit's `convertShellPatternToRegex`. `\` escapes only `*`, `?` and `\`; before `}` or `/`
    /// (which have to be escaped inside `${}`) it is dropped.
    fn compile(pattern: &str, greedy: bool, anchored: bool) -> Result<Pattern, String> {
        let mut scanner = scanner(pattern);
        let mut tokens = Vec::new();
        while let Some(ch) = scanner.next() {
            tokens.push(match ch {
                '*' => Token::AnyRun,
                '?' => Token::AnyChar,
                '\\' if matches!(scanner.peek(), Some('}' | '/')) => continue,
                '\\' => match scanner.next() {
                    Some(escaped @ ('*' | '?' | '\\')) => Token::Char(escaped),
                    other => return Err(format!("invalid escape '\\{}'", go_rune(other))),
                },
                ch => Token::Char(ch),
            });
        }
        Ok(Pattern { tokens, greedy, anchored })
    }

    /// Go's `FindStringIndex` from byte offset `from`: the byte range of the leftmost match.
    fn find_at(&self, text: &str, from: usize) -> Option<(usize, usize)> {
        let mut failed = HashSet::new();
        let starts = text[from..].char_indices().map(|(offset, _)| from + offset).chain(once(text.len()));
        for start in starts {
            if self.anchored && start > 0 {
                break;
            }
            if let Some(end) = self.match_at(text, start, &mut failed) {
                return Some((start, end));
            }
        }
        None
    }

    /// Where the match starting at byte `start` ends, if there is one: a depth-first search through the
    /// states `(token, at)` in the order a backtracking matcher tries them, so the first match found is
    /// Go's. `failed` keeps the states found to lead nowhere, which no later path can change.
    fn match_at(&self, text: &str, start: usize, failed: &mut HashSet<(usize, usize)>) -> Option<usize> {
        // Each state on the path with the count of its next states already tried.
        let mut path = vec![((0, start), 0)];
        while let Some(top) = path.last_mut() {
            let ((token, at), tried) = *top;
            if token == self.tokens.len() {
                return Some(at);
            }
            match self.next_states(token, at, text).into_iter().flatten().nth(tried) {
                Some(next) => {
                    top.1 += 1;
                    if !failed.contains(&next) {
                        path.push((next, 0));
                    }
                }
                None => {
                    failed.insert((token, at));
                    path.pop();
                }
            }
        }
        None
    }

    /// The states that `tokens[token]` at byte `at` can go on to, the preferred one first: `*` prefers
    /// taking one more character when greedy and stopping otherwise.
    fn next_states(&self, token: usize, at: usize, text: &str) -> [Option<(usize, usize)>; 2] {
        let next = text[at..].chars().next();
        let past = |ch: char| at + ch.len_utf8();
        match self.tokens[token] {
            Token::Char(want) => [next.filter(|&ch| ch == want).map(|ch| (token + 1, past(ch))), None],
            Token::AnyChar => [next.filter(|&ch| ch != '\n').map(|ch| (token + 1, past(ch))), None],
            Token::AnyRun => {
                let more = next.filter(|&ch| ch != '\n').map(|ch| (token, past(ch)));
                let stop = Some((token + 1, at));
                if self.greedy {
                    [more, stop]
                } else {
                    [stop, more]
                }
            }
        }
    }

    /// Go's `Regexp.ReplaceAllString`: every match replaced by `template`, except an empty match right
    /// after the previous one.
    fn replace_all(&self, text: &str, template: &str) -> String {
        let mut out = String::new();
        let (mut last_end, mut search) = (0, 0);
        while search <= text.len() {
            let Some((start, end)) = self.find_at(text, search) else { break };
            out.push_str(&text[last_end..start]);
            if end > last_end || start == 0 {
                expand_template(template, &text[start..end], &mut out);
            }
            last_end = end;
            let width = text[search..].chars().next().map_or(1, char::len_utf8);
            search = end.max(search + width);
        }
        out.push_str(&text[last_end..]);
        out
    }
}

/// Go's `Regexp.Expand` for an expression without groups, which `ReplaceAllString` applies to the
/// replacement: `$$` is `$`, `$0` and `${0}` the match, any other `$name` or `${name}` nothing, and a
/// `$` that starts neither stays.
fn expand_template(template: &str, matched: &str, out: &mut String) {
    let mut rest = template;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        rest = &rest[dollar + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        let (braced, body) = match rest.strip_prefix('{') {
            Some(body) => (true, body),
            None => (false, rest),
        };
        let len = body.find(|ch: char| !is_letter(ch) && !is_digit(ch) && ch != '_').unwrap_or(body.len());
        let after = &body[len..];
        let after = if braced { after.strip_prefix('}') } else { Some(after) };
        match after {
            Some(after) if len > 0 => {
                if &body[..len] == "0" {
                    out.push_str(matched);
                }
                rest = after;
            }
            _ => out.push('$'),
        }
    }
    out.push_str(rest);
}

/// Go's `unicode.IsLetter`: general category L, as in Go's Unicode 15.0.0 tables. Rust's
/// `char::is_alphabetic` also takes combining vowel signs, letter numbers and circled letters,
/// which would lengthen variable names BuildKit ends there.
fn is_letter(ch: char) -> bool {
    in_table(LETTERS, ch)
}

/// Go's `unicode.IsDigit`: decimal digits (Nd) of every script, not `char::is_numeric`'s other numbers.
fn is_digit(ch: char) -> bool {
    in_table(DIGITS, ch)
}

fn in_table(table: &[(u32, u32)], ch: char) -> bool {
    let ch = u32::from(ch);
    table
        .binary_search_by(|&(first, last)| {
            if last < ch {
                Ordering::Less
            } else if first > ch {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        })
        .is_ok()
}

/// Go's `unicode.L` (general category L) as inclusive ranges of code points, from the Unicode
/// Character Database 15.0.0.
#[rustfmt::skip]
const LETTERS: &[(u32, u32)] = &[
    (0x0041, 0x005A), (0x0061, 0x007A), (0x00AA, 0x00AA), (0x00B5, 0x00B5), (0x00BA, 0x00BA), (0x00C0, 0x00D6), (0x00D8, 0x00F6),
    (0x00F8, 0x02C1), (0x02C6, 0x02D1), (0x02E0, 0x02E4), (0x02EC, 0x02EC), (0x02EE, 0x02EE), (0x0370, 0x0374), (0x0376, 0x0377),
    (0x037A, 0x037D), (0x037F, 0x037F), (0x0386, 0x0386), (0x0388, 0x038A), (0x038C, 0x038C), (0x038E, 0x03A1), (0x03A3, 0x03F5),
    (0x03F7, 0x0481), (0x048A, 0x052F), (0x0531, 0x0556), (0x0559, 0x0559), (0x0560, 0x0588), (0x05D0, 0x05EA), (0x05EF, 0x05F2),
    (0x0620, 0x064A), (0x066E, 0x066F), (0x0671, 0x06D3), (0x06D5, 0x06D5), (0x06E5, 0x06E6), (0x06EE, 0x06EF), (0x06FA, 0x06FC),
    (0x06FF, 0x06FF), (0x0710, 0x0710), (0x0712, 0x072F), (0x074D, 0x07A5), (0x07B1, 0x07B1), (0x07CA, 0x07EA), (0x07F4, 0x07F5),
    (0x07FA, 0x07FA), (0x0800, 0x0815), (0x081A, 0x081A), (0x0824, 0x0824), (0x0828, 0x0828), (0x0840, 0x0858), (0x0860, 0x086A),
    (0x0870, 0x0887), (0x0889, 0x088E), (0x08A0, 0x08C9), (0x0904, 0x0939), (0x093D, 0x093D), (0x0950, 0x0950), (0x0958, 0x0961),
    (0x0971, 0x0980), (0x0985, 0x098C), (0x098F, 0x0990), (0x0993, 0x09A8), (0x09AA, 0x09B0), (0x09B2, 0x09B2), (0x09B6, 0x09B9),
    (0x09BD, 0x09BD), (0x09CE, 0x09CE), (0x09DC, 0x09DD), (0x09DF, 0x09E1), (0x09F0, 0x09F1), (0x09FC, 0x09FC), (0x0A05, 0x0A0A),
    (0x0A0F, 0x0A10), (0x0A13, 0x0A28), (0x0A2A, 0x0A30), (0x0A32, 0x0A33), (0x0A35, 0x0A36), (0x0A38, 0x0A39), (0x0A59, 0x0A5C),
    (0x0A5E, 0x0A5E), (0x0A72, 0x0A74), (0x0A85, 0x0A8D), (0x0A8F, 0x0A91), (0x0A93, 0x0AA8), (0x0AAA, 0x0AB0), (0x0AB2, 0x0AB3),
    (0x0AB5, 0x0AB9), (0x0ABD, 0x0ABD), (0x0AD0, 0x0AD0), (0x0AE0, 0x0AE1), (0x0AF9, 0x0AF9), (0x0B05, 0x0B0C), (0x0B0F, 0x0B10),
    (0x0B13, 0x0B28), (0x0B2A, 0x0B30), (0x0B32, 0x0B33), (0x0B35, 0x0B39), (0x0B3D, 0x0B3D), (0x0B5C, 0x0B5D), (0x0B5F, 0x0B61),
    (0x0B71, 0x0B71), (0x0B83, 0x0B83), (0x0B85, 0x0B8A), (0x0B8E, 0x0B90), (0x0B92, 0x0B95), (0x0B99, 0x0B9A), (0x0B9C, 0x0B9C),
    (0x0B9E, 0x0B9F), (0x0BA3, 0x0BA4), (0x0BA8, 0x0BAA), (0x0BAE, 0x0BB9), (0x0BD0, 0x0BD0), (0x0C05, 0x0C0C), (0x0C0E, 0x0C10),
    (0x0C12, 0x0C28), (0x0C2A, 0x0C39), (0x0C3D, 0x0C3D), (0x0C58, 0x0C5A), (0x0C5D, 0x0C5D), (0x0C60, 0x0C61), (0x0C80, 0x0C80),
    (0x0C85, 0x0C8C), (0x0C8E, 0x0C90), (0x0C92, 0x0CA8), (0x0CAA, 0x0CB3), (0x0CB5, 0x0CB9), (0x0CBD, 0x0CBD), (0x0CDD, 0x0CDE),
    (0x0CE0, 0x0CE1), (0x0CF1, 0x0CF2), (0x0D04, 0x0D0C), (0x0D0E, 0x0D10), (0x0D12, 0x0D3A), (0x0D3D, 0x0D3D), (0x0D4E, 0x0D4E),
    (0x0D54, 0x0D56), (0x0D5F, 0x0D61), (0x0D7A, 0x0D7F), (0x0D85, 0x0D96), (0x0D9A, 0x0DB1), (0x0DB3, 0x0DBB), (0x0DBD, 0x0DBD),
    (0x0DC0, 0x0DC6), (0x0E01, 0x0E30), (0x0E32, 0x0E33), (0x0E40, 0x0E46), (0x0E81, 0x0E82), (0x0E84, 0x0E84), (0x0E86, 0x0E8A),
    (0x0E8C, 0x0EA3), (0x0EA5, 0x0EA5), (0x0EA7, 0x0EB0), (0x0EB2, 0x0EB3), (0x0EBD, 0x0EBD), (0x0EC0, 0x0EC4), (0x0EC6, 0x0EC6),
    (0x0EDC, 0x0EDF), (0x0F00, 0x0F00), (0x0F40, 0x0F47), (0x0F49, 0x0F6C), (0x0F88, 0x0F8C), (0x1000, 0x102A), (0x103F, 0x103F),
    (0x1050, 0x1055), (0x105A, 0x105D), (0x1061, 0x1061), (0x1065, 0x1066), (0x106E, 0x1070), (0x1075, 0x1081), (0x108E, 0x108E),
    (0x10A0, 0x10C5), (0x10C7, 0x10C7), (0x10CD, 0x10CD), (0x10D0, 0x10FA), (0x10FC, 0x1248), (0x124A, 0x124D), (0x1250, 0x1256),
    (0x1258, 0x1258), (0x125A, 0x125D), (0x1260, 0x1288), (0x128A, 0x128D), (0x1290, 0x12B0), (0x12B2, 0x12B5), (0x12B8, 0x12BE),
    (0x12C0, 0x12C0), (0x12C2, 0x12C5), (0x12C8, 0x12D6), (0x12D8, 0x1310), (0x1312, 0x1315), (0x1318, 0x135A), (0x1380, 0x138F),
    (0x13A0, 0x13F5), (0x13F8, 0x13FD), (0x1401, 0x166C), (0x166F, 0x167F), (0x1681, 0x169A), (0x16A0, 0x16EA), (0x16F1, 0x16F8),
    (0x1700, 0x1711), (0x171F, 0x1731), (0x1740, 0x1751), (0x1760, 0x176C), (0x176E, 0x1770), (0x1780, 0x17B3), (0x17D7, 0x17D7),
    (0x17DC, 0x17DC), (0x1820, 0x1878), (0x1880, 0x1884), (0x1887, 0x18A8), (0x18AA, 0x18AA), (0x18B0, 0x18F5), (0x1900, 0x191E),
    (0x1950, 0x196D), (0x1970, 0x1974), (0x1980, 0x19AB), (0x19B0, 0x19C9), (0x1A00, 0x1A16), (0x1A20, 0x1A54), (0x1AA7, 0x1AA7),
    (0x1B05, 0x1B33), (0x1B45, 0x1B4C), (0x1B83, 0x1BA0), (0x1BAE, 0x1BAF), (0x1BBA, 0x1BE5), (0x1C00, 0x1C23), (0x1C4D, 0x1C4F),
    (0x1C5A, 0x1C7D), (0x1C80, 0x1C88), (0x1C90, 0x1CBA), (0x1CBD, 0x1CBF), (0x1CE9, 0x1CEC), (0x1CEE, 0x1CF3), (0x1CF5, 0x1CF6),
    (0x1CFA, 0x1CFA), (0x1D00, 0x1DBF), (0x1E00, 0x1F15), (0x1F18, 0x1F1D), (0x1F20, 0x1F45), (0x1F48, 0x1F4D), (0x1F50, 0x1F57),
    (0x1F59, 0x1F59), (0x1F5B, 0x1F5B), (0x1F5D, 0x1F5D), (0x1F5F, 0x1F7D), (0x1F80, 0x1FB4), (0x1FB6, 0x1FBC), (0x1FBE, 0x1FBE),
    (0x1FC2, 0x1FC4), (0x1FC6, 0x1FCC), (0x1FD0, 0x1FD3), (0x1FD6, 0x1FDB), (0x1FE0, 0x1FEC), (0x1FF2, 0x1FF4), (0x1FF6, 0x1FFC),
    (0x2071, 0x2071), (0x207F, 0x207F), (0x2090, 0x209C), (0x2102, 0x2102), (0x2107, 0x2107), (0x210A, 0x2113), (0x2115, 0x2115),
    (0x2119, 0x211D), (0x2124, 0x2124), (0x2126, 0x2126), (0x2128, 0x2128), (0x212A, 0x212D), (0x212F, 0x2139), (0x213C, 0x213F),
    (0x2145, 0x2149), (0x214E, 0x214E), (0x2183, 0x2184), (0x2C00, 0x2CE4), (0x2CEB, 0x2CEE), (0x2CF2, 0x2CF3), (0x2D00, 0x2D25),
    (0x2D27, 0x2D27), (0x2D2D, 0x2D2D), (0x2D30, 0x2D67), (0x2D6F, 0x2D6F), (0x2D80, 0x2D96), (0x2DA0, 0x2DA6), (0x2DA8, 0x2DAE),
    (0x2DB0, 0x2DB6), (0x2DB8, 0x2DBE), (0x2DC0, 0x2DC6), (0x2DC8, 0x2DCE), (0x2DD0, 0x2DD6), (0x2DD8, 0x2DDE), (0x2E2F, 0x2E2F),
    (0x3005, 0x3006), (0x3031, 0x3035), (0x303B, 0x303C), (0x3041, 0x3096), (0x309D, 0x309F), (0x30A1, 0x30FA), (0x30FC, 0x30FF),
    (0x3105, 0x312F), (0x3131, 0x318E), (0x31A0, 0x31BF), (0x31F0, 0x31FF), (0x3400, 0x4DBF), (0x4E00, 0xA48C), (0xA4D0, 0xA4FD),
    (0xA500, 0xA60C), (0xA610, 0xA61F), (0xA62A, 0xA62B), (0xA640, 0xA66E), (0xA67F, 0xA69D), (0xA6A0, 0xA6E5), (0xA717, 0xA71F),
    (0xA722, 0xA788), (0xA78B, 0xA7CA), (0xA7D0, 0xA7D1), (0xA7D3, 0xA7D3), (0xA7D5, 0xA7D9), (0xA7F2, 0xA801), (0xA803, 0xA805),
    (0xA807, 0xA80A), (0xA80C, 0xA822), (0xA840, 0xA873), (0xA882, 0xA8B3), (0xA8F2, 0xA8F7), (0xA8FB, 0xA8FB), (0xA8FD, 0xA8FE),
    (0xA90A, 0xA925), (0xA930, 0xA946), (0xA960, 0xA97C), (0xA984, 0xA9B2), (0xA9CF, 0xA9CF), (0xA9E0, 0xA9E4), (0xA9E6, 0xA9EF),
    (0xA9FA, 0xA9FE), (0xAA00, 0xAA28), (0xAA40, 0xAA42), (0xAA44, 0xAA4B), (0xAA60, 0xAA76), (0xAA7A, 0xAA7A), (0xAA7E, 0xAAAF),
    (0xAAB1, 0xAAB1), (0xAAB5, 0xAAB6), (0xAAB9, 0xAABD), (0xAAC0, 0xAAC0), (0xAAC2, 0xAAC2), (0xAADB, 0xAADD), (0xAAE0, 0xAAEA),
    (0xAAF2, 0xAAF4), (0xAB01, 0xAB06), (0xAB09, 0xAB0E), (0xAB11, 0xAB16), (0xAB20, 0xAB26), (0xAB28, 0xAB2E), (0xAB30, 0xAB5A),
    (0xAB5C, 0xAB69), (0xAB70, 0xABE2), (0xAC00, 0xD7A3), (0xD7B0, 0xD7C6), (0xD7CB, 0xD7FB), (0xF900, 0xFA6D), (0xFA70, 0xFAD9),
    (0xFB00, 0xFB06), (0xFB13, 0xFB17), (0xFB1D, 0xFB1D), (0xFB1F, 0xFB28), (0xFB2A, 0xFB36), (0xFB38, 0xFB3C), (0xFB3E, 0xFB3E),
    (0xFB40, 0xFB41), (0xFB43, 0xFB44), (0xFB46, 0xFBB1), (0xFBD3, 0xFD3D), (0xFD50, 0xFD8F), (0xFD92, 0xFDC7), (0xFDF0, 0xFDFB),
    (0xFE70, 0xFE74), (0xFE76, 0xFEFC), (0xFF21, 0xFF3A), (0xFF41, 0xFF5A), (0xFF66, 0xFFBE), (0xFFC2, 0xFFC7), (0xFFCA, 0xFFCF),
    (0xFFD2, 0xFFD7), (0xFFDA, 0xFFDC), (0x10000, 0x1000B), (0x1000D, 0x10026), (0x10028, 0x1003A), (0x1003C, 0x1003D), (0x1003F, 0x1004D),
    (0x10050, 0x1005D), (0x10080, 0x100FA), (0x10280, 0x1029C), (0x102A0, 0x102D0), (0x10300, 0x1031F), (0x1032D, 0x10340),
    (0x10342, 0x10349), (0x10350, 0x10375), (0x10380, 0x1039D), (0x103A0, 0x103C3), (0x103C8, 0x103CF), (0x10400, 0x1049D),
    (0x104B0, 0x104D3), (0x104D8, 0x104FB), (0x10500, 0x10527), (0x10530, 0x10563), (0x10570, 0x1057A), (0x1057C, 0x1058A),
    (0x1058C, 0x10592), (0x10594, 0x10595), (0x10597, 0x105A1), (0x105A3, 0x105B1), (0x105B3, 0x105B9), (0x105BB, 0x105BC),
    (0x10600, 0x10736), (0x10740, 0x10755), (0x10760, 0x10767), (0x10780, 0x10785), (0x10787, 0x107B0), (0x107B2, 0x107BA),
    (0x10800, 0x10805), (0x10808, 0x10808), (0x1080A, 0x10835), (0x10837, 0x10838), (0x1083C, 0x1083C), (0x1083F, 0x10855),
    (0x10860, 0x10876), (0x10880, 0x1089E), (0x108E0, 0x108F2), (0x108F4, 0x108F5), (0x10900, 0x10915), (0x10920, 0x10939),
    (0x10980, 0x109B7), (0x109BE, 0x109BF), (0x10A00, 0x10A00), (0x10A10, 0x10A13), (0x10A15, 0x10A17), (0x10A19, 0x10A35),
    (0x10A60, 0x10A7C), (0x10A80, 0x10A9C), (0x10AC0, 0x10AC7), (0x10AC9, 0x10AE4), (0x10B00, 0x10B35), (0x10B40, 0x10B55),
    (0x10B60, 0x10B72), (0x10B80, 0x10B91), (0x10C00, 0x10C48), (0x10C80, 0x10CB2), (0x10CC0, 0x10CF2), (0x10D00, 0x10D23),
    (0x10E80, 0x10EA9), (0x10EB0, 0x10EB1), (0x10F00, 0x10F1C), (0x10F27, 0x10F27), (0x10F30, 0x10F45), (0x10F70, 0x10F81),
    (0x10FB0, 0x10FC4), (0x10FE0, 0x10FF6), (0x11003, 0x11037), (0x11071, 0x11072), (0x11075, 0x11075), (0x11083, 0x110AF),
    (0x110D0, 0x110E8), (0x11103, 0x11126), (0x11144, 0x11144), (0x11147, 0x11147), (0x11150, 0x11172), (0x11176, 0x11176),
    (0x11183, 0x111B2), (0x111C1, 0x111C4), (0x111DA, 0x111DA), (0x111DC, 0x111DC), (0x11200, 0x11211), (0x11213, 0x1122B),
    (0x1123F, 0x11240), (0x11280, 0x11286), (0x11288, 0x11288), (0x1128A, 0x1128D), (0x1128F, 0x1129D), (0x1129F, 0x112A8),
    (0x112B0, 0x112DE), (0x11305, 0x1130C), (0x1130F, 0x11310), (0x11313, 0x11328), (0x1132A, 0x11330), (0x11332, 0x11333),
    (0x11335, 0x11339), (0x1133D, 0x1133D), (0x11350, 0x11350), (0x1135D, 0x11361), (0x11400, 0x11434), (0x11447, 0x1144A),
    (0x1145F, 0x11461), (0x11480, 0x114AF), (0x114C4, 0x114C5), (0x114C7, 0x114C7), (0x11580, 0x115AE), (0x115D8, 0x115DB),
    (0x11600, 0x1162F), (0x11644, 0x11644), (0x11680, 0x116AA), (0x116B8, 0x116B8), (0x11700, 0x1171A), (0x11740, 0x11746),
    (0x11800, 0x1182B), (0x118A0, 0x118DF), (0x118FF, 0x11906), (0x11909, 0x11909), (0x1190C, 0x11913), (0x11915, 0x11916),
    (0x11918, 0x1192F), (0x1193F, 0x1193F), (0x11941, 0x11941), (0x119A0, 0x119A7), (0x119AA, 0x119D0), (0x119E1, 0x119E1),
    (0x119E3, 0x119E3), (0x11A00, 0x11A00), (0x11A0B, 0x11A32), (0x11A3A, 0x11A3A), (0x11A50, 0x11A50), (0x11A5C, 0x11A89),
    (0x11A9D, 0x11A9D), (0x11AB0, 0x11AF8), (0x11C00, 0x11C08), (0x11C0A, 0x11C2E), (0x11C40, 0x11C40), (0x11C72, 0x11C8F),
    (0x11D00, 0x11D06), (0x11D08, 0x11D09), (0x11D0B, 0x11D30), (0x11D46, 0x11D46), (0x11D60, 0x11D65), (0x11D67, 0x11D68),
    (0x11D6A, 0x11D89), (0x11D98, 0x11D98), (0x11EE0, 0x11EF2), (0x11F02, 0x11F02), (0x11F04, 0x11F10), (0x11F12, 0x11F33),
    (0x11FB0, 0x11FB0), (0x12000, 0x12399), (0x12480, 0x12543), (0x12F90, 0x12FF0), (0x13000, 0x1342F), (0x13441, 0x13446),
    (0x14400, 0x14646), (0x16800, 0x16A38), (0x16A40, 0x16A5E), (0x16A70, 0x16ABE), (0x16AD0, 0x16AED), (0x16B00, 0x16B2F),
    (0x16B40, 0x16B43), (0x16B63, 0x16B77), (0x16B7D, 0x16B8F), (0x16E40, 0x16E7F), (0x16F00, 0x16F4A), (0x16F50, 0x16F50),
    (0x16F93, 0x16F9F), (0x16FE0, 0x16FE1), (0x16FE3, 0x16FE3), (0x17000, 0x187F7), (0x18800, 0x18CD5), (0x18D00, 0x18D08),
    (0x1AFF0, 0x1AFF3), (0x1AFF5, 0x1AFFB), (0x1AFFD, 0x1AFFE), (0x1B000, 0x1B122), (0x1B132, 0x1B132), (0x1B150, 0x1B152),
    (0x1B155, 0x1B155), (0x1B164, 0x1B167), (0x1B170, 0x1B2FB), (0x1BC00, 0x1BC6A), (0x1BC70, 0x1BC7C), (0x1BC80, 0x1BC88),
    (0x1BC90, 0x1BC99), (0x1D400, 0x1D454), (0x1D456, 0x1D49C), (0x1D49E, 0x1D49F), (0x1D4A2, 0x1D4A2), (0x1D4A5, 0x1D4A6),
    (0x1D4A9, 0x1D4AC), (0x1D4AE, 0x1D4B9), (0x1D4BB, 0x1D4BB), (0x1D4BD, 0x1D4C3), (0x1D4C5, 0x1D505), (0x1D507, 0x1D50A),
    (0x1D50D, 0x1D514), (0x1D516, 0x1D51C), (0x1D51E, 0x1D539), (0x1D53B, 0x1D53E), (0x1D540, 0x1D544), (0x1D546, 0x1D546),
    (0x1D54A, 0x1D550), (0x1D552, 0x1D6A5), (0x1D6A8, 0x1D6C0), (0x1D6C2, 0x1D6DA), (0x1D6DC, 0x1D6FA), (0x1D6FC, 0x1D714),
    (0x1D716, 0x1D734), (0x1D736, 0x1D74E), (0x1D750, 0x1D76E), (0x1D770, 0x1D788), (0x1D78A, 0x1D7A8), (0x1D7AA, 0x1D7C2),
    (0x1D7C4, 0x1D7CB), (0x1DF00, 0x1DF1E), (0x1DF25, 0x1DF2A), (0x1E030, 0x1E06D), (0x1E100, 0x1E12C), (0x1E137, 0x1E13D),
    (0x1E14E, 0x1E14E), (0x1E290, 0x1E2AD), (0x1E2C0, 0x1E2EB), (0x1E4D0, 0x1E4EB), (0x1E7E0, 0x1E7E6), (0x1E7E8, 0x1E7EB),
    (0x1E7ED, 0x1E7EE), (0x1E7F0, 0x1E7FE), (0x1E800, 0x1E8C4), (0x1E900, 0x1E943), (0x1E94B, 0x1E94B), (0x1EE00, 0x1EE03),
    (0x1EE05, 0x1EE1F), (0x1EE21, 0x1EE22), (0x1EE24, 0x1EE24), (0x1EE27, 0x1EE27), (0x1EE29, 0x1EE32), (0x1EE34, 0x1EE37),
    (0x1EE39, 0x1EE39), (0x1EE3B, 0x1EE3B), (0x1EE42, 0x1EE42), (0x1EE47, 0x1EE47), (0x1EE49, 0x1EE49), (0x1EE4B, 0x1EE4B),
    (0x1EE4D, 0x1EE4F), (0x1EE51, 0x1EE52), (0x1EE54, 0x1EE54), (0x1EE57, 0x1EE57), (0x1EE59, 0x1EE59), (0x1EE5B, 0x1EE5B),
    (0x1EE5D, 0x1EE5D), (0x1EE5F, 0x1EE5F), (0x1EE61, 0x1EE62), (0x1EE64, 0x1EE64), (0x1EE67, 0x1EE6A), (0x1EE6C, 0x1EE72),
    (0x1EE74, 0x1EE77), (0x1EE79, 0x1EE7C), (0x1EE7E, 0x1EE7E), (0x1EE80, 0x1EE89), (0x1EE8B, 0x1EE9B), (0x1EEA1, 0x1EEA3),
    (0x1EEA5, 0x1EEA9), (0x1EEAB, 0x1EEBB), (0x20000, 0x2A6DF), (0x2A700, 0x2B739), (0x2B740, 0x2B81D), (0x2B820, 0x2CEA1),
    (0x2CEB0, 0x2EBE0), (0x2F800, 0x2FA1D), (0x30000, 0x3134A), (0x31350, 0x323AF),
];

/// Go's `unicode.Nd` (decimal digits) as inclusive ranges of code points, Unicode 15.0.0 as well.
#[rustfmt::skip]
const DIGITS: &[(u32, u32)] = &[
    (0x0030, 0x0039), (0x0660, 0x0669), (0x06F0, 0x06F9), (0x07C0, 0x07C9), (0x0966, 0x096F), (0x09E6, 0x09EF), (0x0A66, 0x0A6F),
    (0x0AE6, 0x0AEF), (0x0B66, 0x0B6F), (0x0BE6, 0x0BEF), (0x0C66, 0x0C6F), (0x0CE6, 0x0CEF), (0x0D66, 0x0D6F), (0x0DE6, 0x0DEF),
    (0x0E50, 0x0E59), (0x0ED0, 0x0ED9), (0x0F20, 0x0F29), (0x1040, 0x1049), (0x1090, 0x1099), (0x17E0, 0x17E9), (0x1810, 0x1819),
    (0x1946, 0x194F), (0x19D0, 0x19D9), (0x1A80, 0x1A89), (0x1A90, 0x1A99), (0x1B50, 0x1B59), (0x1BB0, 0x1BB9), (0x1C40, 0x1C49),
    (0x1C50, 0x1C59), (0xA620, 0xA629), (0xA8D0, 0xA8D9), (0xA900, 0xA909), (0xA9D0, 0xA9D9), (0xA9F0, 0xA9F9), (0xAA50, 0xAA59),
    (0xABF0, 0xABF9), (0xFF10, 0xFF19), (0x104A0, 0x104A9), (0x10D30, 0x10D39), (0x11066, 0x1106F), (0x110F0, 0x110F9), (0x11136, 0x1113F),
    (0x111D0, 0x111D9), (0x112F0, 0x112F9), (0x11450, 0x11459), (0x114D0, 0x114D9), (0x11650, 0x11659), (0x116C0, 0x116C9),
    (0x11730, 0x11739), (0x118E0, 0x118E9), (0x11950, 0x11959), (0x11C50, 0x11C59), (0x11D50, 0x11D59), (0x11DA0, 0x11DA9),
    (0x11F50, 0x11F59), (0x16A60, 0x16A69), (0x16AC0, 0x16AC9), (0x16B50, 0x16B59), (0x1D7CE, 0x1D7FF), (0x1E140, 0x1E149),
    (0x1E2F0, 0x1E2F9), (0x1E4F0, 0x1E4F9), (0x1E950, 0x1E959), (0x1FBF0, 0x1FBF9),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Looks names up in `vars`, the last of a name winning as in BuildKit's `EnvsFromSlice`.
    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| vars.iter().rev().find(|(key, _)| *key == name).map(|(_, value)| (*value).to_owned())
    }

    /// `process_word` gives `expected`; an `Err` is the whole message.
    fn check_word(lex: &Lex, vars: &[(&str, &str)], word: &str, expected: Result<&str, &str>) {
        let got = lex.process_word(word, &lookup(vars));
        assert_eq!(got.as_deref().map_err(|err| err.0.as_str()), expected, "process_word({word:?})");
    }

    /// `process_words` gives `expected`; an `Err` is the whole message.
    fn check_words(lex: &Lex, vars: &[(&str, &str)], word: &str, expected: Result<&[&str], &str>) {
        let got = lex.process_words(word, &lookup(vars));
        let got = got.as_ref().map(|words| words.iter().map(String::as_str).collect::<Vec<_>>()).map_err(|err| err.0.as_str());
        assert_eq!(got, expected.map(<[&str]>::to_vec), "process_words({word:?})");
    }

    /// BuildKit's envVarTest, every line that applies on Linux (its two `W|` lines are for Windows,
    /// where names are case-insensitive), with the message of each error it only marks `error`.
    #[test]
    fn env_var_test() {
        const VARS: &[(&str, &str)] = &[("PWD", "/home"), ("SHELL", "bash"), ("KOREAN", "한국어"), ("NULL", "")];
        let lex = Lex::new('\\');
        let check = |word: &str, expected: Result<&str, &str>| check_word(&lex, VARS, word, expected);
        check("hello", Ok("hello"));
        check("he'll'o", Ok("hello"));
        check("he'llo", Err(r#"failed to process "he'llo": unexpected end of statement while looking for matching single-quote"#));
        check(r"he\'llo", Ok("he'llo"));
        check(r"he\\'llo", Err(r#"failed to process "he\\\\'llo": unexpected end of statement while looking for matching single-quote"#));
        check(r"abc\tdef", Ok("abctdef"));
        check(r#""abc\tdef""#, Ok(r"abc\tdef"));
        check(r#""abc\\tdef""#, Ok(r"abc\tdef"));
        check(r"'abc\tdef'", Ok(r"abc\tdef"));
        check(r"hello\", Ok("hello"));
        check(r"hello\\", Ok(r"hello\"));
        check(r#""hello"#, Err(r#"failed to process "\"hello": unexpected end of statement while looking for matching double-quote"#));
        check(
            r#""hello\""#,
            Err(r#"failed to process "\"hello\\\"": unexpected end of statement while looking for matching double-quote"#),
        );
        check(r#""hel'lo""#, Ok("hel'lo"));
        check("'hello", Err(r#"failed to process "'hello": unexpected end of statement while looking for matching single-quote"#));
        check(r"'hello\'", Ok(r"hello\"));
        check(r"'hello\there'", Ok(r"hello\there"));
        check(r"'hello\\there'", Ok(r"hello\\there"));
        check(r#""''""#, Ok("''"));
        check("$.", Ok("$."));
        check("he$1x", Ok("hex"));
        check("he$.x", Ok("he$.x"));
        check("he$pwd.", Ok("he."));
        check("he$PWD", Ok("he/home"));
        check(r"he\$PWD", Ok("he$PWD"));
        check(r"he\\$PWD", Ok(r"he\/home"));
        check(r#""he\$PWD""#, Ok("he$PWD"));
        check(r#""he\\$PWD""#, Ok(r"he\/home"));
        check(r"\${}", Ok("${}"));
        check(r"\${}aaa", Ok("${}aaa"));
        check(r"he\${}", Ok("he${}"));
        check(r"he\${}xx", Ok("he${}xx"));
        check("${}", Err(r#"failed to process "${}": syntax error: bad substitution"#));
        check("${}aaa", Err(r#"failed to process "${}aaa": syntax error: bad substitution"#));
        check("he${}", Err(r#"failed to process "he${}": syntax error: bad substitution"#));
        check("he${}xx", Err(r#"failed to process "he${}xx": syntax error: bad substitution"#));
        check("he${hi}", Ok("he"));
        check("he${hi}xx", Ok("hexx"));
        check("he${PWD}", Ok("he/home"));
        check("he${.}", Err(r#"failed to process "he${.}": unsupported modifier (.) in substitution"#));
        check("he${XXX:-000}xx", Ok("he000xx"));
        check("he${PWD:-000}xx", Ok("he/homexx"));
        check("he${XXX:-$PWD}xx", Ok("he/homexx"));
        check("he${XXX:-${PWD:-yyy}}xx", Ok("he/homexx"));
        check("he${XXX:-${YYY:-yyy}}xx", Ok("heyyyxx"));
        check("he${XXX:YYY}", Err(r#"failed to process "he${XXX:YYY}": unsupported modifier (:Y) in substitution"#));
        check("he${XXX?}", Err(r#"failed to process "he${XXX?}": XXX: is not allowed to be unset"#));
        check("he${XXX:?}", Err(r#"failed to process "he${XXX:?}": XXX: is not allowed to be unset"#));
        check("he${PWD?}", Ok("he/home"));
        check("he${PWD:?}", Ok("he/home"));
        check("he${NULL?}", Ok("he"));
        check("he${NULL:?}", Err(r#"failed to process "he${NULL:?}": NULL: is not allowed to be empty"#));
        check("he${XXX:+${PWD}}xx", Ok("hexx"));
        check("he${PWD:+${XXX}}xx", Ok("hexx"));
        check("he${PWD:+${SHELL}}xx", Ok("hebashxx"));
        check("he${XXX:+000}xx", Ok("hexx"));
        check("he${PWD:+000}xx", Ok("he000xx"));
        check("'he${XX}'", Ok("he${XX}"));
        check(r#""he${PWD}""#, Ok("he/home"));
        check(r#""he'$PWD'""#, Ok("he'/home'"));
        check(r#""$PWD""#, Ok("/home"));
        check("'$PWD'", Ok("$PWD"));
        check(r"'\$PWD'", Ok(r"\$PWD"));
        check(r#"'"hello"'"#, Ok(r#""hello""#));
        check(r"he\$PWD", Ok("he$PWD"));
        check(r#""he\$PWD""#, Ok("he$PWD"));
        check(r"'he\$PWD'", Ok(r"he\$PWD"));
        check("he${PWD", Err("failed to process \"he${PWD\": unsupported modifier (\u{fffd}) in substitution"));
        check("he${PWD:=000}xx", Err(r#"failed to process "he${PWD:=000}xx": unsupported modifier (:=) in substitution"#));
        check("he${PWD:+${PWD}:}xx", Ok("he/home:xx"));
        check(r"he${XXX:-\$PWD:}xx", Ok("he$PWD:xx"));
        check(r"he${XXX:-\${PWD}z}xx", Ok("he${PWDz}xx"));
        check("안녕하세요", Ok("안녕하세요"));
        check("안'녕'하세요", Ok("안녕하세요"));
        check(
            "안'녕하세요",
            Err(r#"failed to process "안'녕하세요": unexpected end of statement while looking for matching single-quote"#),
        );
        check(r"안녕\'하세요", Ok("안녕'하세요"));
        check(
            r"안\\'녕하세요",
            Err(r#"failed to process "안\\\\'녕하세요": unexpected end of statement while looking for matching single-quote"#),
        );
        check(r"안녕\t하세요", Ok("안녕t하세요"));
        check(r#""안녕\t하세요""#, Ok(r"안녕\t하세요"));
        check(
            r"'안녕\t하세요",
            Err(r#"failed to process "'안녕\\t하세요": unexpected end of statement while looking for matching single-quote"#),
        );
        check(r"안녕하세요\", Ok("안녕하세요"));
        check(r"안녕하세요\\", Ok(r"안녕하세요\"));
        check(
            r#""안녕하세요"#,
            Err(r#"failed to process "\"안녕하세요": unexpected end of statement while looking for matching double-quote"#),
        );
        check(
            r#""안녕하세요\""#,
            Err(r#"failed to process "\"안녕하세요\\\"": unexpected end of statement while looking for matching double-quote"#),
        );
        check(r#""안녕'하세요""#, Ok("안녕'하세요"));
        check(
            "'안녕하세요",
            Err(r#"failed to process "'안녕하세요": unexpected end of statement while looking for matching single-quote"#),
        );
        check(r"'안녕하세요\'", Ok(r"안녕하세요\"));
        check("안녕$1x", Ok("안녕x"));
        check("안녕$.x", Ok("안녕$.x"));
        check("안녕$pwd.", Ok("안녕."));
        check("안녕$PWD", Ok("안녕/home"));
        check(r"안녕\$PWD", Ok("안녕$PWD"));
        check(r"안녕\\$PWD", Ok(r"안녕\/home"));
        check(r"안녕\${}", Ok("안녕${}"));
        check(r"안녕\${}xx", Ok("안녕${}xx"));
        check("안녕${}", Err(r#"failed to process "안녕${}": syntax error: bad substitution"#));
        check("안녕${}xx", Err(r#"failed to process "안녕${}xx": syntax error: bad substitution"#));
        check("안녕${hi}", Ok("안녕"));
        check("안녕${hi}xx", Ok("안녕xx"));
        check("안녕${PWD}", Ok("안녕/home"));
        check("안녕${.}", Err(r#"failed to process "안녕${.}": unsupported modifier (.) in substitution"#));
        check("안녕${XXX:-000}xx", Ok("안녕000xx"));
        check("안녕${PWD:-000}xx", Ok("안녕/homexx"));
        check("안녕${XXX:-$PWD}xx", Ok("안녕/homexx"));
        check("안녕${XXX:-${PWD:-yyy}}xx", Ok("안녕/homexx"));
        check("안녕${XXX:-${YYY:-yyy}}xx", Ok("안녕yyyxx"));
        check("안녕${XXX:YYY}", Err(r#"failed to process "안녕${XXX:YYY}": unsupported modifier (:Y) in substitution"#));
        check("안녕${XXX:+${PWD}}xx", Ok("안녕xx"));
        check("안녕${PWD:+${XXX}}xx", Ok("안녕xx"));
        check("안녕${PWD:+${SHELL}}xx", Ok("안녕bashxx"));
        check("안녕${XXX:+000}xx", Ok("안녕xx"));
        check("안녕${PWD:+000}xx", Ok("안녕000xx"));
        check("'안녕${XX}'", Ok("안녕${XX}"));
        check(r#""안녕${PWD}""#, Ok("안녕/home"));
        check(r#""안녕'$PWD'""#, Ok("안녕'/home'"));
        check(r#"'"안녕"'"#, Ok(r#""안녕""#));
        check(r"안녕\$PWD", Ok("안녕$PWD"));
        check(r#""안녕\$PWD""#, Ok("안녕$PWD"));
        check(r"'안녕\$PWD'", Ok(r"안녕\$PWD"));
        check("안녕${PWD", Err("failed to process \"안녕${PWD\": unsupported modifier (\u{fffd}) in substitution"));
        check("안녕${PWD:=000}xx", Err(r#"failed to process "안녕${PWD:=000}xx": unsupported modifier (:=) in substitution"#));
        check("안녕${PWD:+${PWD}:}xx", Ok("안녕/home:xx"));
        check(r"안녕${XXX:-\$PWD:}xx", Ok("안녕$PWD:xx"));
        check(r"안녕${XXX:-\${PWD}z}xx", Ok("안녕${PWDz}xx"));
        check("$KOREAN", Ok("한국어"));
        check("안녕$KOREAN", Ok("안녕한국어"));
        check("${{aaa}", Err(r#"failed to process "${{aaa}": syntax error: bad substitution"#));
        check("${aaa}}", Ok("}"));
        check("${aaa", Err("failed to process \"${aaa\": unsupported modifier (\u{fffd}) in substitution"));
        check("${{aaa:-bbb}", Err(r#"failed to process "${{aaa:-bbb}": syntax error: bad substitution"#));
        check("${aaa:-bbb}}", Ok("bbb}"));
        check("${aaa:-bbb", Err(r#"failed to process "${aaa:-bbb": syntax error: missing '}'"#));
        check("${aaa:-bbb}", Ok("bbb"));
        check("${aaa:-${bbb:-ccc}}", Ok("ccc"));
        check("${aaa:-bbb ${foo}", Err(r#"failed to process "${aaa:-bbb ${foo}": syntax error: missing '}'"#));
        check("${aaa:-bbb {foo}", Ok("bbb {foo"));
        check("${:}", Err(r#"failed to process "${:}": syntax error: bad substitution"#));
        check("${:-bbb}", Err(r#"failed to process "${:-bbb}": syntax error: bad substitution"#));
        check("${:+bbb}", Err(r#"failed to process "${:+bbb}": syntax error: bad substitution"#));
        check("$1", Ok(""));
        check("${1}", Ok(""));
        check("${1:+bbb}", Ok(""));
        check("${1:-bbb}", Ok("bbb"));
        check("$2", Ok(""));
        check("${2}", Ok(""));
        check("${2:+bbb}", Ok(""));
        check("${2:-bbb}", Ok("bbb"));
        check("$3", Ok(""));
        check("${3}", Ok(""));
        check("${3:+bbb}", Ok(""));
        check("${3:-bbb}", Ok("bbb"));
        check("$4", Ok(""));
        check("${4}", Ok(""));
        check("${4:+bbb}", Ok(""));
        check("${4:-bbb}", Ok("bbb"));
        check("$5", Ok(""));
        check("${5}", Ok(""));
        check("${5:+bbb}", Ok(""));
        check("${5:-bbb}", Ok("bbb"));
        check("$6", Ok(""));
        check("${6}", Ok(""));
        check("${6:+bbb}", Ok(""));
        check("${6:-bbb}", Ok("bbb"));
        check("$7", Ok(""));
        check("${7}", Ok(""));
        check("${7:+bbb}", Ok(""));
        check("${7:-bbb}", Ok("bbb"));
        check("$8", Ok(""));
        check("${8}", Ok(""));
        check("${8:+bbb}", Ok(""));
        check("${8:-bbb}", Ok("bbb"));
        check("$9", Ok(""));
        check("${9}", Ok(""));
        check("${9:+bbb}", Ok(""));
        check("${9:-bbb}", Ok("bbb"));
        check("$999", Ok(""));
        check("${999}", Ok(""));
        check("${999:+bbb}", Ok(""));
        check("${999:-bbb}", Ok("bbb"));
        check("$999aaa", Ok("aaa"));
        check("${999}aaa", Ok("aaa"));
        check("${999:+bbb}aaa", Ok("aaa"));
        check("${999:-bbb}aaa", Ok("bbbaaa"));
        check("$001", Ok(""));
        check("${001}", Ok(""));
        check("${001:+bbb}", Ok(""));
        check("${001:-bbb}", Ok("bbb"));
        check("$001aaa", Ok("aaa"));
        check("${001}aaa", Ok("aaa"));
        check("${001:+bbb}aaa", Ok("aaa"));
        check("${001:-bbb}aaa", Ok("bbbaaa"));
        check("$@", Ok(""));
        check("${@}", Ok(""));
        check("${@:+bbb}", Ok(""));
        check("${@:-bbb}", Ok("bbb"));
        check("$@@@", Ok("@@"));
        check("$@aaa", Ok("aaa"));
        check("${@}aaa", Ok("aaa"));
        check("${@:+bbb}aaa", Ok("aaa"));
        check("${@:-bbb}aaa", Ok("bbbaaa"));
        check("$*", Ok(""));
        check("${*}", Ok(""));
        check("${*:+bbb}", Ok(""));
        check("${*:-bbb}", Ok("bbb"));
        check("$#", Ok(""));
        check("${#}", Ok(""));
        check("${#:+bbb}", Ok(""));
        check("${#:-bbb}", Ok("bbb"));
        check("$?", Ok(""));
        check("${?}", Ok(""));
        check("${?:+bbb}", Ok(""));
        check("${?:-bbb}", Ok("bbb"));
        check("$-", Ok(""));
        check("${-}", Ok(""));
        check("${-:+bbb}", Ok(""));
        check("${-:-bbb}", Ok("bbb"));
        check("$$", Ok(""));
        check("${$}", Ok(""));
        check("${$:+bbb}", Ok(""));
        check("${$:-bbb}", Ok("bbb"));
        check("$!", Ok(""));
        check("${!}", Ok(""));
        check("${!:+bbb}", Ok(""));
        check("${!:-bbb}", Ok("bbb"));
        check("$0", Ok(""));
        check("${0}", Ok(""));
        check("${0:+bbb}", Ok(""));
        check("${0:-bbb}", Ok("bbb"));
    }

    /// BuildKit's wordsTest, each `ENV` line adding to the variables of the lines after it.
    #[test]
    fn words_test() {
        let lex = Lex::new('\\');
        let check = |vars: &[(&str, &str)], word: &str, expected: Result<&[&str], &str>| check_words(&lex, vars, word, expected);
        let mut vars = Vec::new();
        check(&vars, "hello", Ok(&["hello"]));
        check(&vars, "hello${hi}bye", Ok(&["hellobye"]));
        vars.push(("hi", "hi"));
        check(&vars, "hello${hi}bye", Ok(&["hellohibye"]));
        vars.push(("space", "abc  def"));
        check(&vars, "hello${space}bye", Ok(&["helloabc", "defbye"]));
        check(&vars, r#"hello"${space}"bye"#, Ok(&["helloabc  defbye"]));
        check(&vars, r#"hello "${space}"bye"#, Ok(&["hello", "abc  defbye"]));
        vars.push(("leading", "  ab c"));
        check(&vars, "hello${leading}def", Ok(&["hello", "ab", "cdef"]));
        check(&vars, r#"hello"${leading}" def"#, Ok(&["hello  ab c", "def"]));
        check(&vars, r#"hello"${leading}""#, Ok(&["hello  ab c"]));
        check(&vars, "hello${leading}", Ok(&["hello", "ab", "c"]));
        vars.push(("trailing", "ab c   "));
        check(&vars, "hello${trailing}", Ok(&["helloab", "c"]));
        check(&vars, "hello${trailing}d", Ok(&["helloab", "c", "d"]));
        check(&vars, r#"hello"${trailing}"d"#, Ok(&["helloab c   d"]));
        check(&vars, r#"hel"lo${trailing}""#, Ok(&["helloab c   "]));
        check(&vars, r#"hello" there  ""#, Ok(&["hello there  "]));
        check(&vars, "hello there", Ok(&["hello", "there"]));
        check(&vars, r"hello\ there", Ok(&["hello there"]));
        check(
            &vars,
            r#"hello" there"#,
            Err(r#"failed to process "hello\" there": unexpected end of statement while looking for matching double-quote"#),
        );
        check(&vars, r#"hello\" there"#, Ok(&[r#"hello""#, "there"]));
        check(&vars, r#"hello"\\there""#, Ok(&[r"hello\there"]));
        check(&vars, r#"hello"\there""#, Ok(&[r"hello\there"]));
        check(&vars, r"hello'\\there'", Ok(&[r"hello\\there"]));
        check(&vars, r"hello'\there'", Ok(&[r"hello\there"]));
        check(&vars, "hello'$there'", Ok(&["hello$there"]));
    }

    /// A RUN line split as `/bin/sh` splits it: quotes make a word even with nothing in them.
    #[test]
    fn shell_lines_keep_empty_quoted_words() {
        let lex = Lex::new('\\').keep_empty_quoted_words(true);
        let vars = [("EMPTY", ""), ("space", "a  b")];
        let check = |word: &str, expected: &[&str]| check_words(&lex, &vars, word, Ok(expected));
        check(r#"cargo build --features "$EMPTY" --locked"#, &["cargo", "build", "--features", "", "--locked"]);
        check(r#"a '' "" b"#, &["a", "", "", "b"]);
        check("a $EMPTY b", &["a", "b"]);
        check(r#"a ${EMPTY}"" b"#, &["a", "", "b"]);
        check(r#"x"" y "$space""#, &["x", "y", "a  b"]);
        check(r#"--features="$EMPTY" c"#, &["--features=", "c"]);
        // BuildKit's ProcessWords drops them.
        check_words(&Lex::new('\\'), &vars, r#"a "" "$EMPTY" b"#, Ok(&["a", "b"]));
    }

    /// wordsTest again with `RawQuotes` and `SkipUnsetEnv`, the second mode of BuildKit's test, which
    /// never runs there (its file scanner is already at the end); the expectations are BuildKit's output.
    #[test]
    fn words_test_with_raw_quotes_and_skip_unset_env() {
        let lex = Lex::new('\\').raw_quotes(true).skip_unset_env(true);
        let check = |vars: &[(&str, &str)], word: &str, expected: Result<&[&str], &str>| check_words(&lex, vars, word, expected);
        let mut vars = Vec::new();
        check(&vars, "hello", Ok(&["hello"]));
        check(&vars, "hello${hi}bye", Ok(&["hello${hi}bye"]));
        vars.push(("hi", "hi"));
        check(&vars, "hello${hi}bye", Ok(&["hellohibye"]));
        vars.push(("space", "abc  def"));
        check(&vars, "hello${space}bye", Ok(&["helloabc", "defbye"]));
        check(&vars, r#"hello"${space}"bye"#, Ok(&[r#"hello"abc  def"bye"#]));
        check(&vars, r#"hello "${space}"bye"#, Ok(&["hello", r#""abc  def"bye"#]));
        vars.push(("leading", "  ab c"));
        check(&vars, "hello${leading}def", Ok(&["hello", "ab", "cdef"]));
        check(&vars, r#"hello"${leading}" def"#, Ok(&[r#"hello"  ab c""#, "def"]));
        check(&vars, r#"hello"${leading}""#, Ok(&[r#"hello"  ab c""#]));
        check(&vars, "hello${leading}", Ok(&["hello", "ab", "c"]));
        vars.push(("trailing", "ab c   "));
        check(&vars, "hello${trailing}", Ok(&["helloab", "c"]));
        check(&vars, "hello${trailing}d", Ok(&["helloab", "c", "d"]));
        check(&vars, r#"hello"${trailing}"d"#, Ok(&[r#"hello"ab c   "d"#]));
        check(&vars, r#"hel"lo${trailing}""#, Ok(&[r#"hel"loab c   ""#]));
        check(&vars, r#"hello" there  ""#, Ok(&[r#"hello" there  ""#]));
        check(&vars, "hello there", Ok(&["hello", "there"]));
        check(&vars, r"hello\ there", Ok(&["hello there"]));
        check(
            &vars,
            r#"hello" there"#,
            Err(r#"failed to process "hello\" there": unexpected end of statement while looking for matching double-quote"#),
        );
        check(&vars, r#"hello\" there"#, Ok(&[r#"hello""#, "there"]));
        check(&vars, r#"hello"\\there""#, Ok(&[r#"hello"\there""#]));
        check(&vars, r#"hello"\there""#, Ok(&[r#"hello"\there""#]));
        check(&vars, r"hello'\\there'", Ok(&[r"hello'\\there'"]));
        check(&vars, r"hello'\there'", Ok(&[r"hello'\there'"]));
        check(&vars, "hello'$there'", Ok(&["hello'$there'"]));
    }

    /// BuildKit's TestProcessWithMatches, with the message of each error it only expects. Only the words
    /// are checked: the matched and unmatched names, which feed BuildKit's lints, are not tracked here.
    #[test]
    fn process_with_matches() {
        let lex = Lex::new('\\');
        let check = |vars: &[(&str, &str)], word: &str, expected: Result<&str, &str>| check_word(&lex, vars, word, expected);
        check(&[("DUMMY", "dummy")], "x", Ok("x"));
        check(&[("DUMMY", "dummy")], "x ${UNUSED}", Ok("x "));
        check(&[("FOO", "y")], "x ${FOO}", Ok("x y"));
        check(&[("FOO", "xxx"), ("BAR", "")], "${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", Ok("xxx  ccc"));
        check(&[("FOO", "xxx"), ("BAR", "")], "${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", Ok("xxx bbb ccc"));
        check(&[("FOO", "xxx"), ("BAR", "")], "${FOO:-}", Ok("xxx"));
        check(&[], "${FOO:-}", Ok(""));
        check(&[("FOO", "xxx"), ("BAR", "")], "${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}", Ok("aaa bbb "));
        check(&[("FOO", "xxx"), ("BAR", "")], "${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}", Ok("aaa  "));
        check(&[("FOO", "xxx"), ("BAR", "")], "${FOO?aaa}", Ok("xxx"));
        check(&[("FOO", "xxx"), ("BAR", "")], "${BAR?bbb}", Ok(""));
        check(&[("FOO", "xxx"), ("BAR", "")], "${BAZ?ccc}", Err(r#"failed to process "${BAZ?ccc}": BAZ: ccc"#));
        check(&[("FOO", "xxx"), ("BAR", "")], "${FOO:?aaa}", Ok("xxx"));
        check(&[("FOO", "xxx"), ("BAR", "")], "${BAR:?bbb}", Err(r#"failed to process "${BAR:?bbb}": BAR: bbb"#));
        check(&[("FOO", "xxx"), ("BAR", "")], "${BAZ:?ccc}", Err(r#"failed to process "${BAZ:?ccc}": BAZ: ccc"#));
        check(&[("FOO", "xxx"), ("BAR", "")], "${BAZ:?}", Err(r#"failed to process "${BAZ:?}": BAZ: is not allowed to be unset"#));
        check(
            &[("FOO", "xxx"), ("BAR", "")],
            "${FOO=aaa}",
            Err(r#"failed to process "${FOO=aaa}": unsupported modifier (=) in substitution"#),
        );
        check(
            &[("FOO", "xxx"), ("BAR", "")],
            "${FOO=:aaa}",
            Err(r#"failed to process "${FOO=:aaa}": unsupported modifier (=) in substitution"#),
        );
        check(&[], "${FOO=}", Err(r#"failed to process "${FOO=}": unsupported modifier (=) in substitution"#));
        check(&[("FOO", r"()[]{}^$.*?|\x")], r"${FOO#()[]{\}^$.\*\?|\\}", Ok("x"));
        check(&[("FOO", "xx**")], r"${FOO%%\**}", Ok("xx"));
        check(&[("FOO", "xxyy")], "${FOO#*x*y}", Ok("y"));
        check(&[("FOO", "xxyy")], "${FOO#*}", Ok("xxyy"));
        check(&[("FOO", "xxyy"), ("BAR", "x")], "${FOO#$BAR}", Ok("xyy"));
        check(&[("FOO", "xxyy"), ("BAR", "")], "${FOO#$BAR}", Ok("xxyy"));
        check(&[("FOO", "xxyy")], "${FOO#}", Ok("xxyy"));
        check(&[("FOO", "xxyy")], "${FOO##*x}", Ok("yy"));
        check(&[("FOO", "xxyy")], "${FOO##}", Ok("xxyy"));
        check(&[("FOO", "???y")], r"${FOO#?\?}", Ok("?y"));
        check(&[("FOO", "xxyy")], "${ABC:-.}${FOO%x}${ABC:-.}", Ok(".xxyy."));
        check(&[("FOO", "a***yy*")], r"${FOO%%\**\*}", Ok("a"));
        check(&[("FOO", "xxyy")], "${FOO%}", Ok("xxyy"));
        check(&[("FOO", "xxyy"), ("BAR", "")], "${FOO%%$BAR}", Ok("xxyy"));
        check(&[], "${FOO:#}", Err(r#"failed to process "${FOO:#}": unsupported modifier (:#) in substitution"#));
        check(&[], "${FOO:##}", Err(r#"failed to process "${FOO:##}": unsupported modifier (:#) in substitution"#));
        check(&[], "${FOO:%}", Err(r#"failed to process "${FOO:%}": unsupported modifier (:%) in substitution"#));
        check(&[], "${FOO:%%}", Err(r#"failed to process "${FOO:%%}": unsupported modifier (:%) in substitution"#));
        check(&[("FOO", "/foo*/*/*.txt"), ("NEEDLE", r"\*/")], "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}", Ok("/foo.*/*.txt - /foo..*.txt"));
        check(&[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")], "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}", Ok("/tmp/bar.txt - /bar.txt"));
        check(
            &[("FOO", "/a/foo/b/c.txt"), ("NEEDLE", "/?/"), ("REPLACEMENT", "/")],
            "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
            Ok("/foo/b/c.txt - /foo/c.txt"),
        );
        check(
            &[("FOO", "http://google.de"), ("NEEDLE", "http://"), ("REPLACEMENT", "https://")],
            "${FOO/$NEEDLE/$REPLACEMENT}",
            Ok("https://google.de"),
        );
        check(&[("FOO", "/tmp/foo.txt")], r"${FOO//\//\/}", Ok(r"\/tmp\/foo.txt"));
        check(&[("FOO", "xxyy"), ("BAR", "")], "${FOO/$BAR/ww}", Ok("wwxxyy"));
        check(&[("FOO", "xxyy")], "${FOO//ww}", Err(r#"failed to process "${FOO//ww}": syntax error: missing '/' in ${}"#));
        check(&[("FOO", "xxyy")], "${FOO//}", Err(r#"failed to process "${FOO//}": syntax error: missing '/' in ${}"#));
        check(&[("FOO", "xxyy")], "${FOO///}", Ok("xxyy"));
        check(&[], "${FOO///}", Ok(""));
    }

    /// BuildKit's TestProcessWithMatchesPlatform: the release file names of BuildKit itself (the words only).
    #[test]
    fn process_with_matches_platform() {
        const RELEASE: &str = "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz";
        let lex = Lex::new('\\');
        let vars = [("VERSION", "v1.2.3"), ("TARGETOS", "linux"), ("TARGETARCH", "arm"), ("TARGETVARIANT", "v7")];
        check_word(&lex, &vars, RELEASE, Ok("something-v1.2.3.linux-arm-v7.tar.gz"));
        let vars = [("VERSION", "v1.2.3"), ("TARGETOS", "linux"), ("TARGETARCH", "arm64"), ("TARGETVARIANT", "")];
        check_word(&lex, &vars, RELEASE, Ok("something-v1.2.3.linux-arm64.tar.gz"));
        let vars = [("VERSION", "v1.2.3"), ("TARGETOS", "linux"), ("TARGETARCH", "arm64")];
        check_word(&lex, &vars, RELEASE, Ok("something-v1.2.3.linux-arm64.tar.gz"));
    }

    /// BuildKit's TestShellParserMandatoryEnvVars: `?` refuses unset, `:?` unset and empty, with the message given.
    #[test]
    fn mandatory_env_vars() {
        const NO_EMPTY: &str = "${VAR:?message here$ARG}";
        const NO_UNSET: &str = "${VAR?message here$ARG}";
        let lex = Lex::new('\\');
        let set = [("VAR", "plain"), ("ARG", "x")];
        let empty = [("VAR", ""), ("ARG", "x")];
        let unset = [("ARG", "x")];
        check_word(&lex, &set, NO_EMPTY, Ok("plain"));
        check_word(&lex, &empty, NO_EMPTY, Err(r#"failed to process "${VAR:?message here$ARG}": VAR: message herex"#));
        check_word(&lex, &unset, NO_EMPTY, Err(r#"failed to process "${VAR:?message here$ARG}": VAR: message herex"#));
        check_word(&lex, &set, NO_UNSET, Ok("plain"));
        check_word(&lex, &empty, NO_UNSET, Ok(""));
        check_word(&lex, &unset, NO_UNSET, Err(r#"failed to process "${VAR?message here$ARG}": VAR: message herex"#));
    }

    /// BuildKit's TestConvertShellPatternToRegex, on the tokens that stand for its regular expressions.
    #[test]
    fn convert_shell_pattern() {
        let tokens = |pattern: &str| Pattern::compile(pattern, true, true).map(|compiled| compiled.tokens);
        assert_eq!(tokens("*"), Ok(vec![Token::AnyRun]));
        assert_eq!(tokens("?"), Ok(vec![Token::AnyChar]));
        assert_eq!(tokens(r"\*"), Ok(vec![Token::Char('*')]));
        assert_eq!(tokens(r"(()[]{\}^$.\*\?|\\"), Ok("(()[]{}^$.*?|\\".chars().map(Token::Char).collect()));
        assert_eq!(tokens("\\"), Err("invalid escape '\\\u{fffd}'".to_owned()));
        assert_eq!(tokens(r"\x"), Err(r"invalid escape '\x'".to_owned()));
        assert_eq!(tokens(r"\\\"), Err("invalid escape '\\\u{fffd}'".to_owned()));
    }

    /// BuildKit's TestReverseString and TestReversePattern.
    #[test]
    fn reverse() {
        assert_eq!(reversed("54321"), "12345");
        assert_eq!(reversed("🖖🚀👽"), "👽🚀🖖");
        assert_eq!(reverse_pattern(r"a\*c"), r"c\*a");
        assert_eq!(reverse_pattern(r"\\\ab"), r"b\a\\");
        assert_eq!(reverse_pattern(r"ab\"), r"\ba");
        assert_eq!(reverse_pattern(r"👽\🚀🖖"), r"🖖\🚀👽");
        assert_eq!(reverse_pattern(r"\\b"), r"b\\");
    }

    /// RUN's step name: quotes kept, unset variables left as written.
    #[test]
    fn raw_quotes_and_skip_unset_env() {
        const VARS: &[(&str, &str)] = &[("SET", "v a l"), ("EMPTY", "")];
        let lex = Lex::new('\\').raw_quotes(true).skip_unset_env(true);
        check_word(&lex, VARS, r#"echo $UNSET ${UNSET} "$SET" '$SET'"#, Ok(r#"echo $UNSET ${UNSET} "v a l" '$SET'"#));
        check_word(&lex, VARS, "${UNSET:-a b} ${UNSET:+x} ${UNSET?x} ${UNSET:?}", Ok("${UNSET:-a b} ${UNSET:+x} ${UNSET?x} ${UNSET:?}"));
        check_word(&lex, VARS, r#"${UNSET:-"q u"} ${UNSET:-'q'}"#, Ok(r#"${UNSET:-"q u"} ${UNSET:-'q'}"#));
        check_word(&lex, VARS, "${UNSET/x/y} ${UNSET//x/y} ${UNSET#*} ${UNSET%%x}", Ok("${UNSET/x/y} ${UNSET/x/y} ${UNSET#*} ${UNSET%%x}"));
        check_word(&lex, VARS, "${SET:-z} ${SET/ /_} ${EMPTY:-e} ${EMPTY?}", Ok("v a l v_a l e "));
        check_word(&lex, VARS, "${UNSET:=x} ${UNSET:YYY}", Ok("${UNSET:=x} ${UNSET:YYY}"));
        check_word(&lex, VARS, "${UNSET=x}", Err(r#"failed to process "${UNSET=x}": unsupported modifier (=) in substitution"#));
        check_word(&lex, VARS, r#"\"$SET\" "a\"b""#, Ok(r#""v a l" "a"b""#));
        check_word(
            &lex,
            VARS,
            r#"echo "unterminated"#,
            Err(r#"failed to process "echo \"unterminated": unexpected end of statement while looking for matching double-quote"#),
        );
        check_words(&lex, VARS, r#"a "b c" 'd e' $UNSET ${UNSET:-x y}"#, Ok(&["a", r#""b c""#, "'d e'", "$UNSET", "${UNSET:-x", "y}"]));
        check_words(&lex, VARS, r#"say "$SET""#, Ok(&["say", r#""v a l""#]));
    }

    /// The parser looking for heredocs in an instruction line: quotes and escapes kept.
    #[test]
    fn raw_escapes() {
        const VARS: &[(&str, &str)] = &[];
        let lex = Lex::new('\\').raw_quotes(true).raw_escapes(true).skip_unset_env(true);
        check_words(&lex, VARS, "COPY <<EOF /dest", Ok(&["COPY", "<<EOF", "/dest"]));
        check_words(&lex, VARS, r#"RUN <<-"EOF" cat"#, Ok(&["RUN", r#"<<-"EOF""#, "cat"]));
        check_words(&lex, VARS, "RUN cat <<'E O F' <<EOT2", Ok(&["RUN", "cat", "<<'E O F'", "<<EOT2"]));
        check_words(&lex, VARS, "RUN cat << EOF", Ok(&["RUN", "cat", "<< EOF"]));
        check_words(&lex, VARS, "RUN cat <<\t EOF", Ok(&["RUN", "cat", "<<\t EOF"]));
        check_words(&lex, VARS, r"RUN cat <<\EOF", Ok(&["RUN", "cat", r"<<\EOF"]));
        check_words(&lex, VARS, r#"a\ b "c\"d" 'e\f' "g\h""#, Ok(&[r"a\ b", r#""c\"d""#, r"'e\f'", r#""g\\h""#]));
        check_words(&lex, VARS, r"RUN echo $HOME ${X:-a\ b} ${X#a\ b}", Ok(&["RUN", "echo", "$HOME", "${X:-a", "b}", r"${X#a\", "b}"]));
        check_words(&lex, VARS, r"trailing\", Ok(&[r"trailing\"]));
        check_words(&lex, VARS, "a<b <<", Ok(&["a<b", "<<"]));
        check_word(&lex, VARS, r#""\a\$\"""#, Ok(r#""\\a\$\"""#));
        check_word(&lex, VARS, r"\$X\\", Ok(r"\$X\\"));
        check_word(&lex, VARS, r"${X:-\$X}", Ok("${X:-$X}"));
        check_word(&lex, VARS, r"${X/\//\/}", Ok(r"${X/\//\/}"));
    }

    /// The parser telling quoted heredoc delimiters (contents not expanded) from plain ones: split once plain, once with raw quotes.
    #[test]
    fn heredoc_delimiters() {
        let plain = Lex::new('\\').skip_unset_env(true);
        let raw = plain.clone().raw_quotes(true);
        let check = |word: &str, expected: Result<&[&str], &str>, expected_raw: Result<&[&str], &str>| {
            check_words(&plain, &[], word, expected);
            check_words(&raw, &[], word, expected_raw);
        };
        check("EOF", Ok(&["EOF"]), Ok(&["EOF"]));
        check(r#""EOF""#, Ok(&["EOF"]), Ok(&[r#""EOF""#]));
        check("'EOF'", Ok(&["EOF"]), Ok(&["'EOF'"]));
        check(r#"E"O"F"#, Ok(&["EOF"]), Ok(&[r#"E"O"F"#]));
        check(r"\EOF", Ok(&["EOF"]), Ok(&["EOF"]));
        check(
            r#""EOF"#,
            Err(r#"failed to process "\"EOF": unexpected end of statement while looking for matching double-quote"#),
            Err(r#"failed to process "\"EOF": unexpected end of statement while looking for matching double-quote"#),
        );
        check(r#"E\"OF"#, Ok(&[r#"E"OF"#]), Ok(&[r#"E"OF"#]));
        check(r#""E O F""#, Ok(&["E O F"]), Ok(&[r#""E O F""#]));
        check("E OF", Ok(&["E", "OF"]), Ok(&["E", "OF"]));
        check("$EOF", Ok(&["$EOF"]), Ok(&["$EOF"]));
        check("${EOF:-x}", Ok(&["${EOF:-x}"]), Ok(&["${EOF:-x}"]));
    }

    /// The words of `${...}` references nest [`MAX_REFERENCE_DEPTH`] deep and no deeper; when the input
    /// ends inside them the missing delimiter is reported instead, as for any error there.
    #[test]
    fn nesting_limit() {
        let lex = Lex::new('\\').skip_unset_env(true);
        let nested = |depth: usize| format!("{}x{}", "${a:-".repeat(depth), "}".repeat(depth));
        check_word(&lex, &[], &nested(MAX_REFERENCE_DEPTH), Ok(&nested(MAX_REFERENCE_DEPTH)));
        let deeper = nested(MAX_REFERENCE_DEPTH + 1);
        let message = format!("failed to process {}: variable references nested too deeply", go_quote(&deeper));
        check_word(&lex, &[], &deeper, Err(&message));
        let unclosed = "${a:-".repeat(MAX_REFERENCE_DEPTH + 1);
        let message = format!("failed to process {}: syntax error: missing '}}'", go_quote(&unclosed));
        check_word(&lex, &[], &unclosed, Err(&message));
        check_word(&Lex::new('\\'), &[("a", "v")], &nested(MAX_REFERENCE_DEPTH), Ok("v"));
    }

    /// Heredoc contents: quotes are ordinary characters, variables still expand.
    #[test]
    fn skip_process_quotes() {
        const VARS: &[(&str, &str)] = &[("X", "x")];
        let lex = Lex::new('\\').skip_process_quotes(true);
        check_word(&lex, VARS, r#"echo "$X" '$X' ${Y:-"y"}"#, Ok(r#"echo "x" 'x' "y""#));
        check_word(&lex, VARS, "it's $X", Ok("it's x"));
        check_word(&lex, VARS, r#"\$X \\$X \""#, Ok(r#"$X \x ""#));
        check_word(&lex, VARS, r#""${X}""#, Ok(r#""x""#));
        check_word(&lex, VARS, r#"a'b "c"#, Ok(r#"a'b "c"#));
        check_word(&lex, VARS, r#"${X#"x"}"#, Ok("x"));
        check_word(&lex, VARS, "${Y:-'}", Ok("'"));
        check_word(&lex, VARS, "line1\nline2 $X\n", Ok("line1\nline2 x\n"));
    }

    /// The `# escape=`` directive: backslashes are ordinary, as in Windows paths.
    #[test]
    fn backtick_escape() {
        const VARS: &[(&str, &str)] = &[("X", "x")];
        let lex = Lex::new('`');
        check_word(&lex, VARS, "a`b", Ok("ab"));
        check_word(&lex, VARS, "`$X", Ok("$X"));
        check_word(&lex, VARS, r"\$X", Ok(r"\x"));
        check_word(&lex, VARS, r#""a`"b""#, Ok(r#"a"b"#));
        check_word(&lex, VARS, r#""a\""#, Ok(r"a\"));
        check_word(&lex, VARS, r"C:\path\$X", Ok(r"C:\path\x"));
        check_word(&lex, VARS, "a`", Ok("a"));
        check_word(&lex, VARS, "`", Ok(""));
        check_word(&lex, VARS, r#""`$X `` `a""#, Ok("$X ` `a"));
        check_word(&lex, VARS, "${Y:-`}}", Ok("}"));
        check_word(&lex, VARS, "${X/x/`/}", Ok("`/"));
        check_word(
            &lex,
            VARS,
            r"${X#\x}",
            Err(r#"failed to process "${X#\\x}": invalid pattern (\x) in substitution: invalid escape '\x'"#),
        );
        check_words(&lex, VARS, "a` b c", Ok(&["a b", "c"]));
        check_words(&lex, VARS, r#""a\" b"#, Ok(&[r"a\", "b"]));
    }

    /// BuildKit's own behaviour where it differs from a shell, kept on purpose.
    #[test]
    fn quirks() {
        const VARS: &[(&str, &str)] = &[
            ("X", "abcb"),
            ("SP", " a  b "),
            ("N", "a\nb"),
            ("a", "A"),
            ("é", "E"),
            ("aा", "AA"),
            ("٣", "3"),
            ("Ⅻ", "12"),
            ("P", r"a\"),
            ("0", "zero"),
        ];
        let lex = Lex::new('\\');
        check_words(&lex, VARS, "hello${Y:-a}", Ok(&["a"]));
        check_words(&lex, VARS, "p ${Y:-a b} q", Ok(&["p", "a", "b", "q"]));
        check_words(&lex, VARS, "80${PROTO:-/tcp}", Ok(&["/tcp"]));
        check_words(&lex, VARS, "x$SP", Ok(&["x", "a", "b"]));
        check_words(&lex, VARS, r#"x"$SP""#, Ok(&["x a  b "]));
        check_words(&lex, VARS, "a<<b", Ok(&["a<<b"]));
        check_words(&lex, VARS, "cat << EOF", Ok(&["cat", "<< EOF"]));
        check_words(&lex, VARS, "a < b", Ok(&["a", "<", "b"]));
        check_words(&lex, VARS, r#""a"${Y:-b}c"#, Ok(&["bc"]));
        check_words(&lex, VARS, r#""""#, Ok(&[]));
        check_words(&lex, VARS, "'' x", Ok(&["x"]));
        check_word(&lex, VARS, r"${X//b/[\$0]}", Ok(r"a[\b]c[\b]"));
        check_word(&lex, VARS, r"${X//b/\${0\}}", Ok(r"a\${0\}c\${0\}"));
        check_word(&lex, VARS, r"${X/b/\$0}", Ok(r"a\$0cb"));
        check_word(&lex, VARS, r"${X//?/<\$$>}", Ok(r"<\$><\$><\$><\$>"));
        check_word(&lex, VARS, "${X//*/-}", Ok("-"));
        check_word(&lex, VARS, "${X//c*/-}", Ok("ab-"));
        check_word(&lex, VARS, "${Y//*/-}", Ok("-"));
        check_word(&lex, VARS, "\u{feff}abc", Ok("abc"));
        check_word(&lex, VARS, "a\u{feff}b", Ok("a\u{feff}b"));
        check_word(&lex, VARS, "\u{feff}\u{feff}", Ok("\u{feff}"));
        check_word(&lex, VARS, "$é.", Ok("E."));
        check_word(&lex, VARS, "$aा", Ok("Aा"));
        check_word(&lex, VARS, "$Ⅻ", Ok("$Ⅻ"));
        check_word(&lex, VARS, "$٣x", Ok("3x"));
        check_word(&lex, VARS, "${٣}", Ok("3"));
        check_word(&lex, VARS, "$0$00", Ok("zero"));
        check_word(&lex, VARS, "$*x $@x $#x $?x $-x $$x $!x", Ok("x x x x x x x"));
        check_word(&lex, VARS, "${#X}", Err(r#"failed to process "${#X}": unsupported modifier (X) in substitution"#));
        check_word(&lex, VARS, "${#}", Ok(""));
        check_word(&lex, VARS, "$", Ok("$"));
        check_word(&lex, VARS, r#""$""#, Ok("$"));
        check_word(&lex, VARS, "a$ b", Ok("a$ b"));
        check_word(&lex, VARS, "${N#*}", Ok("a\nb"));
        check_word(&lex, VARS, "${N##*}", Ok("\nb"));
        check_word(&lex, VARS, "${N%%*}", Ok("a\n"));
        check_word(&lex, VARS, "${N#?}", Ok("\nb"));
        check_word(&lex, VARS, "${N//*/-}", Ok("-\n-"));
        check_word(&lex, VARS, "${N/?/-}", Ok("-\nb"));
        check_word(&lex, VARS, "${N//?/-}", Ok("-\n-"));
        check_word(&lex, VARS, "${X:}", Err(r#"failed to process "${X:}": syntax error: missing '}'"#));
        check_word(&lex, VARS, "${X:}}", Err(r#"failed to process "${X:}}": unsupported modifier (:}) in substitution"#));
        check_word(&lex, VARS, "${X:=a}", Err(r#"failed to process "${X:=a}": unsupported modifier (:=) in substitution"#));
        check_word(&lex, VARS, "${X=a}", Err(r#"failed to process "${X=a}": unsupported modifier (=) in substitution"#));
        check_word(&lex, VARS, "${X:YYY}", Err(r#"failed to process "${X:YYY}": unsupported modifier (:Y) in substitution"#));
        check_word(&lex, VARS, "${", Err(r#"failed to process "${": syntax error: missing '}'"#));
        check_word(&lex, VARS, "${X", Err("failed to process \"${X\": unsupported modifier (\u{fffd}) in substitution"));
        check_word(&lex, VARS, "${X:", Err(r#"failed to process "${X:": syntax error: missing '}'"#));
        check_word(&lex, VARS, "${X/a", Err(r#"failed to process "${X/a": syntax error: missing '/' in ${}"#));
        check_word(&lex, VARS, "${X#a", Err(r#"failed to process "${X#a": syntax error: missing '}'"#));
        check_word(&lex, VARS, "${X/a/b", Err(r#"failed to process "${X/a/b": syntax error: missing '}'"#));
        check_word(&lex, VARS, r"${X%%a\}", Err(r#"failed to process "${X%%a\\}": syntax error: missing '}'"#));
        check_word(&lex, VARS, "${{X}}", Err(r#"failed to process "${{X}}": syntax error: bad substitution"#));
        check_word(&lex, VARS, "${X:-${}}", Err(r#"failed to process "${X:-${}}": syntax error: bad substitution"#));
        check_word(&lex, VARS, "${:}", Err(r#"failed to process "${:}": syntax error: bad substitution"#));
        check_word(&lex, VARS, "${.}", Err(r#"failed to process "${.}": unsupported modifier (.) in substitution"#));
        check_word(
            &lex,
            VARS,
            "${X#$P}",
            Err("failed to process \"${X#$P}\": invalid pattern (a\\) in substitution: invalid escape '\\\u{fffd}'"),
        );
        check_word(&lex, VARS, "${X%$P}", Err(r#"failed to process "${X%$P}": invalid pattern (\a) in substitution: invalid escape '\a'"#));
        check_word(
            &lex,
            VARS,
            r"${X#a\x}",
            Err(r#"failed to process "${X#a\\x}": invalid pattern (a\x) in substitution: invalid escape '\x'"#),
        );
        check_word(
            &lex,
            VARS,
            r"${X/\x/y}",
            Err(r#"failed to process "${X/\\x/y}": invalid pattern (\x) in substitution: invalid escape '\x'"#),
        );
        check_word(
            &lex,
            VARS,
            r"${Y#\q}",
            Err(r#"failed to process "${Y#\\q}": invalid pattern (\q) in substitution: invalid escape '\q'"#),
        );
        check_word(&lex, VARS, "${X#(a)}", Ok("abcb"));
        check_word(&lex, VARS, "${X%b[c]*}", Ok("abcb"));
        check_word(
            &lex,
            VARS,
            "\"a\tb\0c",
            Err(r#"failed to process "\"a\tb\x00c": unexpected end of statement while looking for matching double-quote"#),
        );
        check_word(
            &lex,
            VARS,
            "'a\u{a0}b\u{2028}c\u{7f}",
            Err(r#"failed to process "'a\u00a0b\u2028c\x7f": unexpected end of statement while looking for matching single-quote"#),
        );
        check_word(
            &lex,
            VARS,
            "x👽\"\u{feff}",
            Err(r#"failed to process "x👽\"\ufeff": unexpected end of statement while looking for matching double-quote"#),
        );
        check_word(&lex, VARS, "${X#\u{feff}a}", Ok("bcb"));
    }

    /// The tables must be sorted and disjoint for their binary search.
    #[test]
    fn unicode_tables() {
        for table in [LETTERS, DIGITS] {
            assert!(table.iter().all(|&(first, last)| first <= last));
            assert!(table.windows(2).all(|pair| pair[0].1 + 1 < pair[1].0));
        }
        assert!(is_letter('한') && is_letter('é') && !is_letter('\u{93e}') && !is_letter('Ⅻ') && !is_letter('_'));
        assert!(is_digit('٣') && !is_digit('²') && !is_digit('a'));
    }
}
