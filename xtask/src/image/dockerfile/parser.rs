//! BuildKit's Dockerfile parser (frontend/dockerfile/parser): lines to instruction nodes.
//!
//! A port of moby/buildkit's `frontend/dockerfile/parser` package (parser.go, line_parsers.go,
//! split_command.go, directives.go) at commit 73ed6825c4b7569379ef89df0aedcdbe64473d31; heredoc
//! detection runs BuildKit's shell lexer, the sibling [`shell`](super::shell) module. BuildKit's
//! behaviour is the specification, quirks included: the same instructions, arguments, heredocs,
//! warnings and errors (message and line) come out of every input, and (in tests) `Parsed::dump`
//! renders them in the text form that BuildKit's `testfiles/*/result` files hold. Only this syntax
//! layer is here: what an instruction means (flag names, required arguments, variable expansion,
//! chomping a `<<-` heredoc's body) belongs to the layer above, as `instructions` is above `parser`
//! in BuildKit.
//!
//! Where Go and Rust differ, Go wins: JSON-form arguments are read as Go's `encoding/json` reads
//! them (a lone UTF-16 surrogate escape becomes U+FFFD, nesting goes 10000 deep), case folding is
//! Go's `strings.ToLower`, and the flag and HEALTHCHECK scanners look at bytes, as BuildKit's do
//! (a non-ASCII byte in a flag becomes the Latin-1 character of that byte). The few places where
//! BuildKit would produce invalid UTF-8 (a word cut inside a multi-byte character) give U+FFFD
//! here instead, as a Rust string must stay valid.

use std::fmt;

use super::go::{go_lower, go_quote};
use super::shell::Lex;

/// A Dockerfile read into instructions, with what the parser directives set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The escape character: `\` unless an `# escape=` directive chose `` ` ``.
    pub escape: char,
    /// The parser directives in the order written: lower-cased name (`syntax`, `escape`, `check`)
    /// and value.
    pub directives: Vec<(String, String)>,
    pub nodes: Vec<Node>,
    pub warnings: Vec<Warning>,
}

/// One instruction: BuildKit's `Node`, with its `Next` chain flattened into `args`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    /// The instruction's keyword, lower-cased (BuildKit keeps it as written in `Node.Value` and
    /// lower-cases it wherever it looks at it). Empty for a line that is only a continuation.
    pub keyword: String,
    /// The `--name=value` flags that start the arguments, as written less their quoting.
    pub flags: Vec<String>,
    /// The values of BuildKit's `Next` chain. Their shape depends on the keyword's line parser:
    /// ENV and LABEL give name, value, separator triples (`"="`, or `""` for the legacy
    /// `KEY value` form), HEALTHCHECK its type then the command, an unknown keyword a single
    /// empty string; see the line parsers below for the rest.
    pub args: Vec<String>,
    /// Whether the arguments were a JSON array (BuildKit's `Attributes["json"]`).
    pub json: bool,
    /// The instruction's text once continuation lines are joined and comments dropped.
    pub original: String,
    /// The bodies of the `<<WORD` heredocs the instruction opened, in order.
    pub heredocs: Vec<Heredoc>,
    /// The comment lines right before the instruction (BuildKit's `PrevComment`), without their
    /// `#` and surrounding whitespace; an empty `#` line starts them over, and parser directives
    /// are not among them.
    pub comments: Vec<String>,
    /// The instruction's first and last line, 1-based, heredoc bodies included. Zero in the
    /// instruction an ONBUILD carries, which BuildKit never gives lines.
    pub start_line: usize,
    pub end_line: usize,
    /// The instruction that an ONBUILD carries.
    pub sub: Option<Box<Node>>,
}

/// A heredoc body (`<<EOF` ... `EOF`) attached to a RUN, COPY or ADD.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Heredoc {
    /// The terminator word, quotes removed.
    pub name: String,
    /// The lines between the instruction and the terminator, each with its line ending. Leading
    /// tabs are kept even for `<<-`: see [`chomp_heredoc_content`].
    pub content: String,
    /// False when any part of the word was quoted (`<<'EOF'`, `<<"EOF"`, `<<E"O"F`): the body is
    /// then taken literally, with no variable expansion.
    pub expand: bool,
    /// Written `<<-`: leading tabs are stripped from the terminator line here, and from the body by
    /// whoever uses it.
    pub chomp: bool,
    /// The file descriptor written before `<<` (`3<<EOF`); 0 when there is none.
    pub file_descriptor: u64,
}

/// Something BuildKit accepts but warns about (today only empty continuation lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub message: String,
    /// The last line of the instruction warned about.
    pub line: usize,
}

/// Why BuildKit would reject the Dockerfile, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The first line of BuildKit's error location: the instruction's first line for an error in
    /// an instruction, the number of lines read for a file with no instruction or an over-long
    /// line, and (a BuildKit quirk kept as is) the 0-based index of the line for an error in a
    /// parser directive.
    pub line: usize,
    /// The last line of the location, at least `line`.
    pub end_line: usize,
    /// BuildKit's error message, word for word.
    pub message: String,
}

impl ParseError {
    fn new(line: usize, end_line: usize, message: impl Into<String>) -> Self {
        ParseError { line, end_line: end_line.max(line), message: message.into() }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParseError {}

#[cfg(test)]
impl Parsed {
    /// BuildKit's `result.AST.Dump()`: one `(instruction ...)` line per instruction.
    pub fn dump(&self) -> String {
        self.nodes.iter().map(|node| format!("({})\n", node.dump())).collect::<String>().trim().to_string()
    }
}

impl Node {
    /// BuildKit's `Node.Dump()`: the keyword, the flags as a Go `%q` list, then each argument
    /// quoted as Go's `strconv.Quote` does, an ONBUILD's instruction in parentheses.
    #[cfg(test)]
    pub fn dump(&self) -> String {
        // Rendered from the innermost instruction out, so that no ONBUILD chain recurses.
        let mut chain = vec![self];
        while let Some(sub) = chain.last().and_then(|node| node.sub.as_deref()) {
            chain.push(sub);
        }
        chain.iter().rev().fold(String::new(), |inner, node| node.dump_around(&inner))
    }

    /// This node's dump line, with `sub`, the dump of its ONBUILD instruction if any.
    #[cfg(test)]
    fn dump_around(&self, sub: &str) -> String {
        let mut out = self.keyword.clone();
        if !self.flags.is_empty() {
            let flags: Vec<String> = self.flags.iter().map(|flag| go_quote(flag)).collect();
            out.push_str(&format!(" [{}]", flags.join(" ")));
        }
        if self.sub.is_some() {
            out.push_str(&format!(" ({sub})"));
        }
        for arg in &self.args {
            out.push(' ');
            out.push_str(&go_quote(arg));
        }
        out.trim().to_string()
    }

    /// Whether BuildKit looks for heredocs in this instruction: a shell-form RUN, COPY or ADD, also
    /// as the instruction of an ONBUILD.
    fn can_contain_heredoc(&self) -> bool {
        // Only an ONBUILD has a sub-instruction.
        let target = self.sub.as_deref().unwrap_or(self);
        matches!(target.keyword.as_str(), "add" | "copy" | "run") && !target.json
    }
}

/// Go's `bufio.MaxScanTokenSize`: BuildKit reads lines with a `bufio.Scanner`, which gives up on a
/// line that does not fit its largest buffer.
const MAX_TOKEN_SIZE: usize = 64 * 1024;

/// The error of BuildKit's JSON line parsers for an array holding something else than strings.
const NOT_STRING_ARRAY: &str = "when using JSON array syntax, arrays must be comprised of strings only";

/// Reads a Dockerfile as BuildKit's `parser.Parse` does.
pub fn parse(text: &str) -> Result<Parsed, ParseError> {
    let mut lines = Lines { rest: text, too_long: false };
    let mut directives = Directives { escape: '\\', done: false, found: Vec::new() };
    let mut current_line = 0;
    let mut nodes = Vec::new();
    let mut warnings = Vec::new();
    let mut comments: Vec<String> = Vec::new();

    while let Some(mut raw) = lines.next() {
        if current_line == 0 {
            raw = raw.strip_prefix('\u{feff}').unwrap_or(raw);
        }
        if is_comment(raw) {
            // BuildKit drops the first byte whatever it is, so an indented comment keeps its `#`.
            let comment = String::from_utf8_lossy(&raw.as_bytes()[1..]).trim().to_string();
            if comment.is_empty() {
                comments.clear();
            } else {
                comments.push(comment);
            }
        }
        let token = raw.trim_end_matches(['\r', '\n']).trim_start();
        if directives.possible_parser_directive(token).map_err(|message| ParseError::new(current_line, current_line, message))? {
            comments.pop();
        }
        current_line += 1;
        let start_line = current_line;

        let (first, mut end_of_line) = trim_continuation(strip_comment(token), directives.escape);
        if end_of_line && first.is_empty() {
            continue;
        }
        let mut line = first.to_string();
        let mut has_empty_continuation_line = false;
        // Continuation lines keep their leading whitespace. Parser directives cannot appear here:
        // the line that started the instruction already ended them.
        while !end_of_line {
            let Some(raw) = lines.next() else { break };
            current_line += 1;
            if is_comment(raw) {
                continue;
            }
            let token = raw.trim_end_matches(['\r', '\n']);
            if token.chars().all(char::is_whitespace) {
                has_empty_continuation_line = true;
                continue;
            }
            let (part, end) = trim_continuation(token, directives.escape);
            end_of_line = end;
            line.push_str(part);
        }

        if has_empty_continuation_line {
            warnings.push(Warning { message: format!("Empty continuation line found in: {line}"), line: current_line });
        }

        let mut node = node_from_line(&line, directives.escape, std::mem::take(&mut comments))
            .map_err(|message| ParseError::new(start_line, current_line, message))?;

        if node.can_contain_heredoc() && line.contains("<<") {
            let heredocs = heredocs_from_line(&line).map_err(|message| ParseError::new(start_line, current_line, message))?;
            for mut heredoc in heredocs {
                let mut terminated = false;
                for raw in lines.by_ref() {
                    current_line += 1;
                    let mut candidate = raw.trim_end_matches(['\r', '\n']);
                    if heredoc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == heredoc.name {
                        terminated = true;
                        break;
                    }
                    heredoc.content.push_str(raw);
                }
                if !terminated {
                    return Err(ParseError::new(start_line, current_line, "unterminated heredoc"));
                }
                node.heredocs.push(heredoc);
            }
        }

        node.start_line = start_line;
        node.end_line = current_line;
        nodes.push(node);
    }

    if nodes.is_empty() {
        return Err(ParseError::new(current_line, current_line, "file with no instructions"));
    }
    if lines.too_long {
        let message = format!("dockerfile line greater than max allowed size of {}", MAX_TOKEN_SIZE - 1);
        return Err(ParseError::new(current_line, current_line, message));
    }
    Ok(Parsed { escape: directives.escape, directives: directives.found, nodes, warnings })
}

/// The Dockerfile's lines, each with its `\n`, as BuildKit's line scanner yields them: it stops
/// at a line longer than Go's scanner buffer, which BuildKit reports once the lines before it are
/// parsed.
struct Lines<'a> {
    rest: &'a str,
    too_long: bool,
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.too_long || self.rest.is_empty() {
            return None;
        }
        // A line fits with its newline in the full buffer; a last line without one must leave a
        // byte free, as the scanner only learns of the end of input from a read into free space.
        let len = match self.rest.find('\n') {
            Some(newline) if newline < MAX_TOKEN_SIZE => newline + 1,
            None if self.rest.len() < MAX_TOKEN_SIZE => self.rest.len(),
            _ => {
                self.too_long = true;
                return None;
            }
        };
        let (line, rest) = self.rest.split_at(len);
        self.rest = rest;
        Some(line)
    }
}

/// The parser directives' state: the escape character, whether directives may still appear, and
/// those found.
struct Directives {
    escape: char,
    done: bool,
    found: Vec<(String, String)>,
}

impl Directives {
    /// Reads a parser directive from the start of the file (`# name=value`, leading whitespace
    /// already dropped), and tells whether the line was one. The first line that is not a known
    /// directive, an empty one included, ends the directives; a repeated directive and an escape
    /// that is neither `\` nor `` ` `` are errors.
    fn possible_parser_directive(&mut self, line: &str) -> Result<bool, String> {
        if self.done {
            return Ok(false);
        }
        let Some((name, value)) = directive_parts(line) else {
            self.done = true;
            return Ok(false);
        };
        let name = name.to_ascii_lowercase();
        if !matches!(name.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(false);
        }
        if self.found.iter().any(|(seen, _)| *seen == name) {
            return Err(format!("only one {name} parser directive can be used"));
        }
        if name == "escape" {
            self.escape = match value {
                "\\" => '\\',
                "`" => '`',
                _ => return Err(format!("invalid escape token '{value}' does not match ` or \\")),
            };
        }
        self.found.push((name, value.to_string()));
        Ok(true)
    }
}

/// Matches BuildKit's `#` then `^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`: the name and the value,
/// whose surrounding blanks are dropped unless the value is nothing else.
fn directive_parts(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('#')?.trim_start();
    if !rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let name_len = rest.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(rest.len());
    let (name, rest) = rest.split_at(name_len);
    let value = rest.trim_start_matches(is_regexp_space).strip_prefix('=')?;
    // The regexp's `\s*` before the value leaves it at least one character.
    let first_kept = value.char_indices().find(|&(_, c)| !is_regexp_space(c)).map_or(value.len(), |(i, _)| i);
    let value = match value[..first_kept].char_indices().last() {
        Some((last, _)) if first_kept == value.len() => &value[last..],
        _ => value[first_kept..].trim_end_matches(is_regexp_space),
    };
    (!value.is_empty()).then_some((name, value))
}

/// Go's regexp `\s`: ASCII whitespace without the vertical tab.
fn is_regexp_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ')
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

fn strip_comment(line: &str) -> &str {
    if is_comment(line) {
        ""
    } else {
        line
    }
}

/// BuildKit's line-continuation regexp, `([^E])E[ \t]*$|^E[ \t]*$` for the escape character `E`:
/// a line ending in the escape character, optionally followed by blanks, continues unless that
/// character is itself escaped. Returns the line without it, and whether the instruction ends here.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let Some(before) = line.trim_end_matches([' ', '\t']).strip_suffix(escape) else {
        return (line, true);
    };
    if before.ends_with(escape) {
        (line, true)
    } else {
        (before, false)
    }
}

/// BuildKit's `newNodeFromLine`: splits the keyword and flags off and hands the rest to the
/// keyword's line parser. An ONBUILD's instruction is read the same way; a chain of them
/// (`ONBUILD ONBUILD ...`, which the layer above rejects) is built from the innermost out, so that
/// no line can exhaust the stack.
fn node_from_line(line: &str, escape: char, comments: Vec<String>) -> Result<Node, String> {
    let mut onbuilds = Vec::new();
    let mut text = line.to_string();
    let mut node = loop {
        let (command, flags, rest) = split_command(&text, escape);
        let keyword = go_lower(command);
        if keyword == "onbuild" && !rest.is_empty() {
            onbuilds.push(Node { keyword, flags, original: std::mem::replace(&mut text, rest), ..Node::default() });
            continue;
        }
        let parsed = match keyword.as_str() {
            "add" | "copy" | "volume" => parse_maybe_json_to_list(&rest)?,
            "arg" => Args::list(parse_words(&rest, escape)),
            "cmd" | "entrypoint" | "run" | "shell" => parse_maybe_json(&rest)?,
            "env" => parse_name_val(&rest, "ENV", escape)?,
            "label" => parse_name_val(&rest, "LABEL", escape)?,
            "expose" | "from" => parse_strings_whitespace_delimited(&rest),
            "healthcheck" => parse_health_config(&rest)?,
            "maintainer" | "stopsignal" | "user" | "workdir" => parse_string(&rest),
            // An ONBUILD with nothing after it.
            "onbuild" => Args::default(),
            // BuildKit keeps unknown instructions, with one empty argument, for the layer above to
            // reject.
            _ => Args::list(vec![String::new()]),
        };
        break Node { keyword, flags, args: parsed.values, json: parsed.json, original: text, ..Node::default() };
    };
    while let Some(mut onbuild) = onbuilds.pop() {
        onbuild.sub = Some(Box::new(node));
        node = onbuild;
    }
    node.comments = comments;
    Ok(node)
}

/// What a line parser makes of an instruction's arguments: BuildKit's `Next` chain and attributes.
#[derive(Default)]
struct Args {
    values: Vec<String>,
    json: bool,
}

impl Args {
    fn list(values: Vec<String>) -> Self {
        Args { values, ..Args::default() }
    }
}

/// BuildKit's `splitCommand`: the keyword, the flags, and the rest of the line, trimmed.
fn split_command(line: &str, escape: char) -> (&str, Vec<String>, String) {
    let pieces = split_blank_runs(line.trim(), 2);
    match pieces[..] {
        [command, rest] => {
            let (rest, flags) = extract_builder_flags(rest, escape);
            (command, flags, rest.trim().to_string())
        }
        _ => (pieces[0], Vec::new(), String::new()),
    }
}

/// BuildKit's `reWhitespace.Split(s, limit)`: the pieces between runs of `[\t\v\f\r ]`, at most
/// `limit` of them, the last one holding the rest.
fn split_blank_runs(s: &str, limit: usize) -> Vec<&str> {
    let is_blank = |c: char| matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ');
    let mut pieces = Vec::new();
    let mut rest = s;
    while pieces.len() + 1 < limit {
        let Some(start) = rest.find(is_blank) else { break };
        let end = rest[start..].find(|c| !is_blank(c)).map_or(rest.len(), |len| start + len);
        pieces.push(&rest[..start]);
        rest = &rest[end..];
    }
    pieces.push(rest);
    pieces
}

/// Go's `unicode.IsSpace` applied to a single byte, as BuildKit's byte-wise scanners do.
fn is_space_byte(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r' | b' ' | 0x85 | 0xa0)
}

/// BuildKit's `extractBuilderFlags`: the words starting with `--` at the start of the arguments,
/// quotes and escapes removed, up to the first other word or a lone `--`. It walks bytes, so a
/// non-ASCII byte becomes the Latin-1 character of that value, as Go's `rune(byte)` does.
fn extract_builder_flags(line: &str, escape: char) -> (String, Vec<String>) {
    enum Phase {
        Spaces,
        Word,
        Quote(u8),
    }
    let bytes = line.as_bytes();
    let rest_at = |pos: usize| String::from_utf8_lossy(&bytes[pos..]).into_owned();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut blank_ok = false;
    let mut pos = 0;
    while pos <= bytes.len() {
        if let Phase::Spaces = phase {
            let Some(&ch) = bytes.get(pos) else { break };
            if is_space_byte(ch) {
                pos += 1;
                continue;
            }
            if ch != b'-' || bytes.get(pos + 1) != Some(&b'-') {
                return (rest_at(pos), words);
            }
            phase = Phase::Word;
        }
        let Some(&ch) = bytes.get(pos) else {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        };
        let at_end = pos + 1 == bytes.len();
        match phase {
            Phase::Word if is_space_byte(ch) => {
                phase = Phase::Spaces;
                if word == "--" {
                    return (rest_at(pos), words);
                }
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
            }
            Phase::Word if ch == b'\'' || ch == b'"' => {
                phase = Phase::Quote(ch);
                blank_ok = true;
            }
            Phase::Quote(quote) if ch == quote => phase = Phase::Word,
            Phase::Word | Phase::Quote(_) if char::from(ch) == escape => {
                if at_end {
                    // A trailing escape is dropped, and closes a quote.
                    phase = Phase::Word;
                } else {
                    pos += 1;
                    word.push(char::from(bytes[pos]));
                }
            }
            _ => word.push(char::from(ch)),
        }
        pos += 1;
    }
    (String::new(), words)
}

/// BuildKit's `parseWords`: splits on whitespace outside quotes, keeping the quotes and escapes
/// for the layer above to process. An escape character at the very end is dropped.
fn parse_words(rest: &str, escape: char) -> Vec<String> {
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut blank_ok = false;
    let mut chars = rest.chars();
    while let Some(mut ch) = chars.next() {
        match phase {
            Phase::Spaces if ch.is_whitespace() => {}
            Phase::Spaces | Phase::Word => {
                if ch.is_whitespace() {
                    phase = Phase::Spaces;
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    blank_ok = false;
                    continue;
                }
                phase = Phase::Word;
                if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                }
                if ch == escape {
                    // Unquoted, an escape keeps the next character whatever it is, quotes included.
                    let Some(next) = chars.next() else { continue };
                    word.push(ch);
                    ch = next;
                }
                word.push(ch);
            }
            Phase::Quote(quote) => {
                if ch == quote {
                    phase = Phase::Word;
                }
                // Nothing escapes inside single quotes.
                if ch == escape && quote != '\'' {
                    let Some(next) = chars.next() else {
                        phase = Phase::Word;
                        continue;
                    };
                    word.push(ch);
                    ch = next;
                }
                word.push(ch);
            }
        }
    }
    if !matches!(phase, Phase::Spaces) && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// BuildKit's `parseNameVal` for ENV and LABEL: `name=value ...` gives name, value, `"="` for each
/// word; a first word without `=` selects the legacy `KEY value` form, the name then the whole
/// rest of the line as the value, with an empty separator.
fn parse_name_val(rest: &str, key: &str, escape: char) -> Result<Args, String> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else { return Ok(Args::default()) };
    if !first.contains('=') {
        let pieces = split_blank_runs(rest, 2);
        let [name, value] = pieces[..] else { return Err(format!("{key} must have two arguments")) };
        return Ok(Args::list(vec![name.to_string(), value.to_string(), String::new()]));
    }
    let mut values = Vec::new();
    for word in &words {
        let Some((name, value)) = word.split_once('=') else {
            return Err(format!("Syntax error - can't find = in {}. Must be of the form: name=value", go_quote(word)));
        };
        values.extend([name.to_string(), value.to_string(), "=".to_string()]);
    }
    Ok(Args::list(values))
}

/// BuildKit's `parseStringsWhitespaceDelimited` (EXPOSE, FROM, and the shell form of COPY, ADD and
/// VOLUME): one argument per blank-separated piece.
fn parse_strings_whitespace_delimited(rest: &str) -> Args {
    if rest.is_empty() {
        return Args::default();
    }
    Args::list(split_blank_runs(rest, usize::MAX).into_iter().map(str::to_string).collect())
}

/// BuildKit's `parseString` (MAINTAINER, STOPSIGNAL, USER, WORKDIR): the rest as one argument.
fn parse_string(rest: &str) -> Args {
    if rest.is_empty() {
        return Args::default();
    }
    Args::list(vec![rest.to_string()])
}

/// BuildKit's `parseMaybeJSON` (CMD, ENTRYPOINT, RUN, SHELL): a JSON array of strings gives one
/// argument per element, anything that is not valid JSON the rest as one shell-form argument,
/// and valid JSON with a non-string element is an error.
fn parse_maybe_json(rest: &str) -> Result<Args, String> {
    if rest.is_empty() {
        return Ok(Args::default());
    }
    match parse_json(rest) {
        Ok(values) => Ok(Args { values, json: true }),
        Err(JsonError::NotStrings) => Err(NOT_STRING_ARRAY.to_string()),
        Err(JsonError::Invalid) => Ok(Args::list(vec![rest.to_string()])),
    }
}

/// BuildKit's `parseMaybeJSONToList` (ADD, COPY, VOLUME): as `parse_maybe_json`, but the shell
/// form is split on blanks.
fn parse_maybe_json_to_list(rest: &str) -> Result<Args, String> {
    match parse_json(rest) {
        Ok(values) => Ok(Args { values, json: true }),
        Err(JsonError::NotStrings) => Err(NOT_STRING_ARRAY.to_string()),
        Err(JsonError::Invalid) => Ok(parse_strings_whitespace_delimited(rest)),
    }
}

/// BuildKit's `parseHealthConfig`: the first word (`CMD`, `NONE`, or anything: the layer above
/// checks), then the rest as `parse_maybe_json` reads it, JSON attribute included.
fn parse_health_config(rest: &str) -> Result<Args, String> {
    let bytes = rest.as_bytes();
    let sep = bytes.iter().position(|&b| is_space_byte(b)).unwrap_or(bytes.len());
    if sep == 0 {
        return Ok(Args::default());
    }
    let next = sep + bytes[sep..].iter().take_while(|&&b| is_space_byte(b)).count();
    let mut command = parse_maybe_json(&String::from_utf8_lossy(&bytes[next..]))?;
    command.values.insert(0, String::from_utf8_lossy(&bytes[..sep]).into_owned());
    Ok(command)
}

/// How a JSON-form argument failed, as BuildKit tells the cases apart.
#[derive(Debug, PartialEq, Eq)]
enum JsonError {
    /// Not a JSON array, or not JSON at all: BuildKit falls back to the shell form.
    Invalid,
    /// A valid JSON array with something else than a string in it: an error.
    NotStrings,
}

/// Go's `encoding/json` nesting limit.
const MAX_JSON_DEPTH: usize = 10_000;

/// BuildKit's `parseJSON`: a JSON array of strings, read as Go's `json.Unmarshal` reads it into
/// `[]any`. A number too large for a float64 anywhere fails the unmarshalling itself, so it
/// counts as invalid rather than as a non-string.
fn parse_json(rest: &str) -> Result<Vec<String>, JsonError> {
    let text = rest.trim_start();
    if !text.starts_with('[') {
        return Err(JsonError::Invalid);
    }
    let mut reader = JsonReader { text, pos: 0, overflow: false };
    let elements = reader.array_elements().ok_or(JsonError::Invalid)?;
    if reader.overflow {
        return Err(JsonError::Invalid);
    }
    elements.into_iter().map(|element| element.ok_or(JsonError::NotStrings)).collect()
}

/// A JSON validator and decoder for one document whose top level is an array; it walks nested
/// values with an explicit stack, so Go's 10000 levels cannot overflow the call stack.
struct JsonReader<'a> {
    text: &'a str,
    pos: usize,
    /// Whether a number was out of a float64's range.
    overflow: bool,
}

impl JsonReader<'_> {
    /// The top-level array's elements (a string's value, `None` for any other value), or `None`
    /// when the document is not valid JSON.
    fn array_elements(&mut self) -> Option<Vec<Option<String>>> {
        let mut elements = Vec::new();
        let mut open: Vec<u8> = Vec::new();
        // Loop invariant: the reader is where a value must start.
        self.skip_whitespace();
        loop {
            let top_level = open.len() == 1;
            match self.peek()? {
                b'[' | b'{' => {
                    let bracket = self.bump();
                    open.push(bracket);
                    if open.len() > MAX_JSON_DEPTH {
                        return None;
                    }
                    if top_level {
                        elements.push(None);
                    }
                    self.skip_whitespace();
                    let close = if bracket == b'[' { b']' } else { b'}' };
                    if self.peek() != Some(close) {
                        if bracket == b'{' {
                            self.object_key()?;
                        }
                        continue;
                    }
                    self.bump();
                    open.pop();
                }
                b'"' => {
                    let value = self.string()?;
                    if top_level {
                        elements.push(Some(value));
                    }
                }
                b'-' | b'0'..=b'9' => {
                    self.number()?;
                    if top_level {
                        elements.push(None);
                    }
                }
                _ => {
                    let literal = ["true", "false", "null"].into_iter().find(|literal| self.text[self.pos..].starts_with(literal))?;
                    self.pos += literal.len();
                    if top_level {
                        elements.push(None);
                    }
                }
            }
            // After a value: separators and closing brackets, until another value starts.
            loop {
                self.skip_whitespace();
                // BuildKit v0.13 (Docker 26) decodes the first value and ignores what follows
                // (`CMD ["a"] words` is `["a"]`); v0.14 and later refuse trailing text.
                let Some(&bracket) = open.last() else { return Some(elements) };
                match (self.peek()?, bracket) {
                    (b',', _) => {
                        self.bump();
                        self.skip_whitespace();
                        if bracket == b'{' {
                            self.object_key()?;
                        }
                        break;
                    }
                    (b']', b'[') | (b'}', b'{') => {
                        self.bump();
                        open.pop();
                    }
                    _ => return None,
                }
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn bump(&mut self) -> u8 {
        let byte = self.text.as_bytes()[self.pos];
        self.pos += 1;
        byte
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// An object's `"key":`, leaving the reader where the value starts.
    fn object_key(&mut self) -> Option<()> {
        if self.peek()? != b'"' {
            return None;
        }
        self.string()?;
        self.skip_whitespace();
        self.bump_if(b':').then(|| self.skip_whitespace())
    }

    fn bump_if(&mut self, byte: u8) -> bool {
        let matched = self.peek() == Some(byte);
        if matched {
            self.pos += 1;
        }
        matched
    }

    /// A string's decoded value, escapes resolved as Go's decoder does: an unpaired UTF-16
    /// surrogate becomes U+FFFD.
    fn string(&mut self) -> Option<String> {
        self.bump();
        let mut value = String::new();
        let mut start = self.pos;
        loop {
            let byte = self.peek()?;
            match byte {
                b'"' => {
                    value.push_str(&self.text[start..self.pos]);
                    self.pos += 1;
                    return Some(value);
                }
                b'\\' => {
                    value.push_str(&self.text[start..self.pos]);
                    let kind = *self.text.as_bytes().get(self.pos + 1)?;
                    self.pos += 2;
                    let escaped = match kind {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\x08',
                        b'f' => '\x0c',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return None,
                    };
                    value.push(escaped);
                    start = self.pos;
                }
                0..=0x1f => return None,
                _ => self.pos += 1,
            }
        }
    }

    /// The character of a `\uXXXX` escape (the `\u` read), joined with a following low surrogate
    /// escape when it is a high surrogate.
    fn unicode_escape(&mut self) -> Option<char> {
        let unit = self.hex4(self.pos)?;
        self.pos += 4;
        if !(0xd800..0xe000).contains(&unit) {
            return char::from_u32(unit);
        }
        let low = self.text[self.pos..].strip_prefix("\\u").and_then(|_| self.hex4(self.pos + 2));
        match low {
            Some(low) if (0xd800..0xdc00).contains(&unit) && (0xdc00..0xe000).contains(&low) => {
                self.pos += 6;
                char::from_u32(0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00))
            }
            _ => Some('\u{fffd}'),
        }
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let digits = self.text.get(at..at + 4)?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(digits, 16).ok()
    }

    /// A number in JSON's grammar; notes when Go could not hold it in a float64.
    fn number(&mut self) -> Option<()> {
        let start = self.pos;
        self.bump_if(b'-');
        if !self.bump_if(b'0') {
            self.digits()?;
        }
        if self.bump_if(b'.') {
            self.digits()?;
        }
        if self.bump_if(b'e') || self.bump_if(b'E') {
            if !self.bump_if(b'+') {
                self.bump_if(b'-');
            }
            self.digits()?;
        }
        let value: f64 = self.text[start..self.pos].parse().ok()?;
        self.overflow |= value.is_infinite();
        Some(())
    }

    /// One or more ASCII digits.
    fn digits(&mut self) -> Option<()> {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        (self.pos > start).then_some(())
    }
}

/// BuildKit's `heredocsFromLine`: the heredocs an instruction line opens, found by lexing the line
/// as a shell would, quotes and escapes kept, and reading each word with [`parse_heredoc`]. A line
/// the lexer rejects (an unclosed quote) opens none.
fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let lex = heredoc_lex().raw_quotes(true).raw_escapes(true);
    let words = lex.process_words(line, &no_variables).unwrap_or_default();
    let mut heredocs = Vec::new();
    for word in words {
        heredocs.extend(parse_heredoc(&word)?);
    }
    Ok(heredocs)
}

/// BuildKit's `ParseHeredoc`: whether one word of an instruction (`<<EOF`, `<<-'EOF'`, `3<<EOF`)
/// opens a heredoc, and which. The layer above uses it to tell a heredoc source from a path.
pub fn parse_heredoc(word: &str) -> Result<Option<Heredoc>, String> {
    // `^(\d*)<<(-?)\s*([^<]*)$`
    let digits = word.find(|c: char| !c.is_ascii_digit()).unwrap_or(word.len());
    let Some(rest) = word[digits..].strip_prefix("<<") else { return Ok(None) };
    if rest.contains('<') {
        return Ok(None);
    }
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    let rest = rest.trim_start_matches(is_regexp_space);
    if rest.is_empty() {
        return Ok(None);
    }
    // Go's ParseUint saturates on overflow.
    let file_descriptor = word[..digits].parse().unwrap_or(if digits == 0 { 0 } else { u64::MAX });

    // Lexing with quotes removed and with quotes kept tells whether any part of the word was
    // quoted, which turns expansion off.
    let lex = heredoc_lex();
    let words = lex.process_words(rest, &no_variables).map_err(|err| err.0)?;
    let [name] = &words[..] else { return Ok(None) };
    let raw_words = lex.raw_quotes(true).process_words(rest, &no_variables).map_err(|err| err.0)?;
    let [raw_name] = &raw_words[..] else {
        return Err(format!("internal lexing of heredoc produced inconsistent results: {rest}"));
    };
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    Ok(Some(Heredoc { name: name.clone(), content: String::new(), expand: quotes(name) == quotes(raw_name), chomp, file_descriptor }))
}

/// BuildKit's `ChompHeredocContent`: a `<<-` heredoc's body with the leading tabs of every line
/// removed.
pub fn chomp_heredoc_content(content: &str) -> String {
    content.split_inclusive('\n').map(|line| line.trim_start_matches('\t')).collect()
}

/// The lexer BuildKit's parser reads heredoc words with: escape `\` whatever the escape directive
/// says, and, as no variable is set, references left as written.
fn heredoc_lex() -> Lex {
    Lex::new('\\').skip_unset_env(true)
}

/// No variable is set while the parser looks for heredocs.
fn no_variables(_: &str) -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use expect_test::{expect, Expect};

    use super::*;

    /// Parses `dockerfile` and compares BuildKit's dump of it, or the error with its lines.
    fn check(dockerfile: &str, expected: Expect) {
        expected.assert_eq(&render(dockerfile));
    }

    fn render(dockerfile: &str) -> String {
        match parse(dockerfile) {
            Ok(parsed) => parsed.dump(),
            Err(err) => format!("error at {}-{}: {err}", err.line, err.end_line),
        }
    }

    fn parsed(dockerfile: &str) -> Parsed {
        parse(dockerfile).unwrap_or_else(|err| panic!("{dockerfile:?}: {err}"))
    }

    /// Each instruction's lines and text, and its heredocs as `name expand chomp fd content`.
    fn check_heredocs(dockerfile: &str, expected: Expect) {
        let mut out = String::new();
        for node in parsed(dockerfile).nodes {
            out.push_str(&format!("{}-{} {}\n", node.start_line, node.end_line, node.original));
            for h in node.heredocs {
                out.push_str(&format!("  {:?} {} {} {} {:?}\n", h.name, h.expand, h.chomp, h.file_descriptor, h.content));
            }
        }
        expected.assert_eq(&out);
    }

    /// BuildKit's parser test corpus: each directory's Dockerfile and the dump it must give.
    macro_rules! testfiles {
        ($($name:literal),* $(,)?) => {
            [$((
                $name,
                include_str!(concat!("testdata/testfiles/", $name, "/Dockerfile")),
                include_str!(concat!("testdata/testfiles/", $name, "/result")),
            )),*]
        };
    }

    #[test]
    fn testfiles() {
        let cases = testfiles![
            "ADD-COPY-with-JSON",
            "args",
            "brimstone-consuldock",
            "brimstone-docker-consul",
            "continue-at-eof",
            "continueIndent",
            "cpuguy83-nagios",
            "docker",
            "env",
            "escape-after-comment",
            "escape-nonewline",
            "escape-with-syntax",
            "escape",
            "escapes",
            "flags",
            "health",
            "influxdb",
            "jeztah-invalid-json-json-inside-string-double",
            "jeztah-invalid-json-json-inside-string",
            "jeztah-invalid-json-single-quotes",
            "jeztah-invalid-json-unterminated-bracket",
            "jeztah-invalid-json-unterminated-string",
            "json",
            "kartar-entrypoint-oddities",
            "lk4d4-the-edge-case-generator",
            "mail",
            "multiple-volumes",
            "mumble",
            "nginx",
            "tf2",
            "trailing-backslash",
            "weechat",
            "znc",
        ];
        for (name, dockerfile, result) in cases {
            assert_eq!(parsed(dockerfile).dump() + "\n", result, "testfiles/{name}");
        }
    }

    #[test]
    fn negative_testfiles() {
        let cases = [
            ("empty_dockerfile", include_str!("testdata/testfiles-negative/empty_dockerfile/Dockerfile")),
            ("env_no_value", include_str!("testdata/testfiles-negative/env_no_value/Dockerfile")),
            ("only_comments", include_str!("testdata/testfiles-negative/only_comments/Dockerfile")),
            ("shykes-nested-json", include_str!("testdata/testfiles-negative/shykes-nested-json/Dockerfile")),
        ];
        let errors: Vec<String> = cases.iter().map(|(name, dockerfile)| format!("{name}: {}", render(dockerfile))).collect();
        expect![[r#"
            empty_dockerfile: error at 0-0: file with no instructions
            env_no_value: error at 3-3: ENV must have two arguments
            only_comments: error at 3-3: file with no instructions
            shykes-nested-json: error at 1-1: when using JSON array syntax, arrays must be comprised of strings only"#]]
        .assert_eq(&errors.join("\n"));
    }

    #[test]
    fn line_numbers() {
        let parsed = parsed(include_str!("testdata/testfile-line/Dockerfile"));
        let lines: Vec<(usize, usize)> = parsed.nodes.iter().map(|node| (node.start_line, node.end_line)).collect();
        assert_eq!(lines, [(5, 5), (11, 12), (17, 31)]);
        assert_eq!(parsed.directives, [("escape".to_string(), "\\".to_string())]);
    }

    #[test]
    fn parse_words_keeps_quotes_and_escapes() {
        let cases: [(&str, &[&str]); 8] = [
            ("foo", &["foo"]),
            ("foo bar", &["foo", "bar"]),
            ("foo\\ bar", &["foo\\ bar"]),
            ("foo=bar", &["foo=bar"]),
            ("foo bar 'abc xyz'", &["foo", "bar", "'abc xyz'"]),
            (r#"foo bar "abc xyz""#, &["foo", "bar", r#""abc xyz""#]),
            ("àöû", &["àöû"]),
            (r#"föo bàr "âbc xÿz""#, &["föo", "bàr", r#""âbc xÿz""#]),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_words(input, '\\'), expected, "{input:?}");
        }
    }

    #[test]
    fn empty_continuation_lines_warn() {
        let parsed = parsed(
            "\nFROM alpine:3.6\n\nRUN valid \\\n    continuation\n\nRUN something \\\n\n    following \\\n\n    more\n\n\
             RUN another \\\n\n    thing\n\nRUN non-indented \\\n# this is a comment\n   after-comment\n\n\
             RUN indented \\\n    # this is an indented comment\n    comment\n\t",
        );
        let warnings: Vec<String> = parsed.warnings.iter().map(|w| format!("{}: {}", w.line, w.message)).collect();
        expect![[r#"
            11: Empty continuation line found in: RUN something     following     more
            15: Empty continuation line found in: RUN another     thing"#]]
        .assert_eq(&warnings.join("\n"));
        expect![[r#"
            (from "alpine:3.6")
            (run "valid     continuation")
            (run "something     following     more")
            (run "another     thing")
            (run "non-indented    after-comment")
            (run "indented     comment")"#]]
        .assert_eq(&parsed.dump());
    }

    #[test]
    fn overlong_line_is_an_error() {
        let label = "a".repeat(MAX_TOKEN_SIZE);
        check(
            &format!("\n\t\tFROM image\n\t\tLABEL test={label}\n"),
            expect!["error at 2-2: dockerfile line greater than max allowed size of 65535"],
        );
        // A line fits with its newline in 64 KiB; the last line needs one byte to spare.
        let longest = format!("LABEL a={}", "a".repeat(MAX_TOKEN_SIZE - 9));
        for (dockerfile, fits) in
            [(format!("FROM x\n{longest}\n"), true), (format!("FROM x\n{longest}"), true), (format!("FROM x\n{longest}a"), false)]
        {
            assert_eq!(parse(&dockerfile).is_ok(), fits);
        }
        // The lines after an over-long one are not read, and the instructions before it come first.
        check(&format!("{label}\nFROM x\n"), expect!["error at 0-0: file with no instructions"]);
    }

    #[test]
    fn parse_name_val_forms() {
        let old = parse_name_val("foo bar", "LABEL", '\\').unwrap();
        assert_eq!(old.values, ["foo", "bar", ""]);
        let new = parse_name_val("foo=bar thing=star", "LABEL", '\\').unwrap();
        assert_eq!(new.values, ["foo", "bar", "=", "thing", "star", "="]);
        // Docker has no way to unset a variable in a Dockerfile.
        assert_eq!(parse_name_val("foo", "ENV", '\\').err(), Some("ENV must have two arguments".to_string()));
        check("FROM x\nENV a=1 b\n", expect![[r#"error at 2-2: Syntax error - can't find = in "b". Must be of the form: name=value"#]]);
        check(
            "FROM x\nENV a=1 'b c'=\"d e\" f\\ g=h\nLABEL x y  z\nENV\nLABEL \"a b\" c\n",
            expect![[r#"
            (from "x")
            (env "a" "1" "=" "'b c'" "\"d e\"" "=" "f\\ g" "h" "=")
            (label "x" "y  z" "")
            (env)
            (label "\"a" "b\" c" "")"#]],
        );
    }

    #[test]
    fn directives() {
        let found = |dockerfile: &str| parsed(dockerfile).directives;
        assert_eq!(found("#escape=\\\n# key = FOO bar\n\n# smth\nFROM x\n"), [("escape".into(), "\\".into())]);
        // Names are case-insensitive.
        assert_eq!(found("# EScape=\\\n# KEY = FOO bar\n\n# smth\nFROM x\n"), [("escape".into(), "\\".into())]);
        let all = found("# syntax = docker/dockerfile:1 \n  #  CHECK=skip=all\n# escape=`\nFROM x");
        let expected = [("syntax", "docker/dockerfile:1"), ("check", "skip=all"), ("escape", "`")];
        assert_eq!(all, expected.map(|(name, value)| (name.to_string(), value.to_string())));
        // Directives end at the first line that is not one: an instruction, a comment, an empty
        // line, an unknown directive, a shebang.
        for first in ["FROM x\n", "# comment\n", "\n", "# foo=bar\n", "#!/bin/sh\n"] {
            let parsed = parsed(&format!("{first}# escape=`\nFROM x `\n  y\n"));
            assert_eq!((parsed.escape, parsed.directives.len()), ('\\', 0), "{first:?}");
        }
        check(
            "# escape=`\nFROM a `\n b\nRUN c \\\n",
            expect![[r#"
            (from "a" "b")
            (run "c \\")"#]],
        );
        check("# Syntax=a\n# syntax=b\nFROM x", expect!["error at 1-1: only one syntax parser directive can be used"]);
        check("# escape=`\n# escape=`\nFROM x", expect!["error at 1-1: only one escape parser directive can be used"]);
        check("# escape=x\nFROM x", expect![[r#"error at 0-0: invalid escape token 'x' does not match ` or \"#]]);
        check("# escape=   \nFROM x", expect![[r#"error at 0-0: invalid escape token ' ' does not match ` or \"#]]);
        // Directive lines are not comments of the instruction after them.
        let node = &parsed("# syntax=x\n# about FROM\nFROM x").nodes[0];
        assert_eq!(node.comments, ["about FROM"]);
    }

    #[test]
    fn comments_before_instructions() {
        let nodes = parsed("# one\n#two\n#\n# three\n  # four\nFROM x\nRUN a \\\n# not kept\n b\n\n# five\n\nRUN c").nodes;
        let comments: Vec<&[String]> = nodes.iter().map(|node| &node.comments[..]).collect();
        // BuildKit drops the first byte of an indented comment line, which leaves its `#`.
        assert_eq!(comments, [&["three".to_string(), "# four".to_string()][..], &[], &["five".to_string()]]);
    }

    #[test]
    fn byte_order_mark_and_line_endings() {
        let parsed = parsed("\u{feff}# escape=`\r\nFROM x `\r\n  y\r\nRUN a\r\n");
        assert_eq!(parsed.escape, '`');
        assert_eq!(parsed.dump(), "(from \"x\" \"y\")\n(run \"a\")");
    }

    #[test]
    fn continuation_lines() {
        check(
            "FROM x\nRUN a \\\n\tb \\  \n  c \\\\\nRUN d\\\\\\\nRUN e \\\n#c\n\n",
            expect![[r#"
            (from "x")
            (run "a \tb   c \\\\")
            (run "d\\\\\\")
            (run "e")"#]],
        );
        // A line that is only a continuation starts an instruction; at the end of the file, an
        // instruction with no keyword.
        check(
            "FROM x\n\\\nRUN y\n\\",
            expect![[r#"
            (from "x")
            (run "y")
            ("")"#]],
        );
    }

    #[test]
    fn flags() {
        check(
            r#"FROM x
COPY --from=a --chown="b c" --e='f\'g' --h --i="" --j= "--k" a b
COPY --a -- --b c
COPY --a --b--c x
COPY --l=é --m
RUN --mount=type=cache,target=/x make
ONBUILD --n RUN --o [ "p" ]
"#,
            expect![[r#"
                (from "x")
                (copy ["--from=a" "--chown=b c" "--e=f'g" "--h" "--i=" "--j="] "\"--k\"" "a" "b")
                (copy ["--a"] "--b" "c")
                (copy ["--a" "--b--c"] "x")
                (copy ["--l=Ã©" "--m"])
                (run ["--mount=type=cache,target=/x"] "make")
                (onbuild ["--n"] (run ["--o"] "p"))"#]],
        );
    }

    #[test]
    fn line_parsers() {
        check(
            r#"FROM a AS b
ARG A=1 B="2 3" C
EXPOSE 80/tcp	443
VOLUME ["/a", "/b"]
VOLUME /c /d
ADD ["a b", "c"]
SHELL ["/bin/sh", "-c"]
CMD ["a", "b" ]
CMD ["a", 1
CMD {"a": "b"}
ENTRYPOINT ['a']
MAINTAINER  me  <me@example.com>
STOPSIGNAL SIGTERM
USER a:b
WORKDIR /a b
HEALTHCHECK NONE
HEALTHCHECK --interval=1s CMD ["a", "b"]
HEALTHCHECK CMD  a  b
UNKNOWN a b
ONBUILD
ONBUILD ONBUILD run ["a"]
"#,
            expect![[r#"
                (from "a" "AS" "b")
                (arg "A=1" "B=\"2 3\"" "C")
                (expose "80/tcp" "443")
                (volume "/a" "/b")
                (volume "/c" "/d")
                (add "a b" "c")
                (shell "/bin/sh" "-c")
                (cmd "a" "b")
                (cmd "[\"a\", 1")
                (cmd "{\"a\": \"b\"}")
                (entrypoint "['a']")
                (maintainer "me  <me@example.com>")
                (stopsignal "SIGTERM")
                (user "a:b")
                (workdir "/a b")
                (healthcheck "NONE")
                (healthcheck ["--interval=1s"] "CMD" "a" "b")
                (healthcheck "CMD" "a  b")
                (unknown "")
                (onbuild)
                (onbuild (onbuild (run "a")))"#]],
        );
        let nodes = parsed("FROM x\nHEALTHCHECK CMD [\"a\"]\nONBUILD RUN [\"b\"]\nRun x").nodes;
        assert!(nodes[1].json && !nodes[2].json && nodes[2].sub.as_ref().is_some_and(|sub| sub.json));
        assert_eq!((nodes[3].keyword.as_str(), nodes[3].original.as_str()), ("run", "Run x"));
        check(
            "FROM x\nRUN [\"a\", [\"b\"]]",
            expect!["error at 2-2: when using JSON array syntax, arrays must be comprised of strings only"],
        );
        check(
            "FROM x\nCOPY [\"a\", null]",
            expect!["error at 2-2: when using JSON array syntax, arrays must be comprised of strings only"],
        );
    }

    #[test]
    fn json_arrays_of_strings() {
        let valid: [(&str, &[&str]); 9] = [
            ("[]", &[]),
            (r#"[""]"#, &[""]),
            (r#"["a"]"#, &["a"]),
            (r#"["a","b"]"#, &["a", "b"]),
            (r#"[ "a", "b" ]"#, &["a", "b"]),
            ("[\t\"a\",\t\"b\"\t]", &["a", "b"]),
            ("\t[\t\"a\",\t\"b\"\t]\t", &["a", "b"]),
            (r#"["abc 123", "♥", "☃", "\" \\ \/ \b \f \n \r \t \u0000"]"#, &["abc 123", "♥", "☃", "\" \\ / \x08 \x0c \n \r \t \0"]),
            // Go's decoder joins surrogate pairs and replaces lone surrogates.
            (r#"["\ud83d\ude00", "\ud800", "\udc00\ud800x"]"#, &["😀", "\u{fffd}", "\u{fffd}\u{fffd}x"]),
        ];
        for (json, expected) in valid {
            assert_eq!(parse_json(json), Ok(expected.iter().map(|s| s.to_string()).collect()), "{json}");
        }
        let not_strings = [
            r#"["a",42,"b"]"#,
            r#"["a",123.456,"b"]"#,
            r#"["a",{},"b"]"#,
            r#"["a",{"c": "d"},"b"]"#,
            r#"["a",["c"],"b"]"#,
            r#"["a",true,"b"]"#,
            r#"["a",false,"b"]"#,
            r#"["a",null,"b"]"#,
            r#"["a", {"b": [1, true, null]}]"#,
        ];
        for json in not_strings {
            assert_eq!(parse_json(json), Err(JsonError::NotStrings), "{json}");
        }
        // Not JSON, or a number Go cannot hold: the shell form.
        for json in ["", "a", "{}", "[", "[\"a\",]", "['a']", "[01]", "[1.]", "[\"\\x\"]", "[\"\t\"]", r#"["a", 1e400]"#] {
            assert_eq!(parse_json(json), Err(JsonError::Invalid), "{json}");
        }
        // Docker 26's BuildKit (v0.13) decodes the first value and ignores what follows it.
        assert_eq!(parse_json("[\"a\"] x"), Ok(vec!["a".to_string()]));
        let nested = |depth: usize| format!("[{}{}]", "[".repeat(depth - 1), "]".repeat(depth - 1));
        assert_eq!(parse_json(&nested(MAX_JSON_DEPTH)), Err(JsonError::NotStrings));
        assert_eq!(parse_json(&nested(MAX_JSON_DEPTH + 1)), Err(JsonError::Invalid));
    }

    #[test]
    fn heredocs() {
        // parser_heredoc_test.go's TestParseExtractsHeredoc.
        check_heredocs(
            r#"
FROM alpine:3.6

ENV NAME=me

RUN ls

USER <<INVALID
INVALID

RUN <<EMPTY
EMPTY

RUN 3<<EMPTY2
EMPTY2

RUN "<<NOHEREDOC"

RUN <<INDENT
	foo
	bar
INDENT

RUN <<-UNINDENT
	baz
	quux
UNINDENT

RUN <<-UNINDENT2
	baz
	quux
	UNINDENT2

RUN <<-EXPAND
	expand $NAME
EXPAND

RUN <<-'NOEXPAND'
	don't expand $NAME
NOEXPAND

RUN <<COPY
echo hello world
echo foo bar
COPY

RUN <<COMMENT
# internal comment
echo hello world
echo foo bar # trailing comment
COMMENT

RUN --mount=type=cache,target=/foo <<MOUNT
echo hello
MOUNT

COPY <<FILE1 <<FILE2 /dest
content 1
FILE1
content 2
FILE2

COPY <<EOF /quotes
"foo"
'bar'
EOF

COPY <<X <<Y /dest
Y
X
X
Y

RUN <<COMPLEX python3
print('hello world')
COMPLEX

COPY <<file.txt /dest
hello world
file.txt

RUN <<eo'f'
echo foo
eof

RUN <<eo\'f
echo foo
eo'f

RUN <<'e'o\'f
echo foo
eo'f

RUN <<'one two'
echo bar
one two

RUN <<$EOF
$EOF

RUN <<  EOF
EOF

RUN <<  EOF  > foo
EOF
	"#,
            expect![[r##"
                2-2 FROM alpine:3.6
                4-4 ENV NAME=me
                6-6 RUN ls
                8-8 USER <<INVALID
                9-9 INVALID
                11-12 RUN <<EMPTY
                  "EMPTY" true false 0 ""
                14-15 RUN 3<<EMPTY2
                  "EMPTY2" true false 3 ""
                17-17 RUN "<<NOHEREDOC"
                19-22 RUN <<INDENT
                  "INDENT" true false 0 "\tfoo\n\tbar\n"
                24-27 RUN <<-UNINDENT
                  "UNINDENT" true true 0 "\tbaz\n\tquux\n"
                29-32 RUN <<-UNINDENT2
                  "UNINDENT2" true true 0 "\tbaz\n\tquux\n"
                34-36 RUN <<-EXPAND
                  "EXPAND" true true 0 "\texpand $NAME\n"
                38-40 RUN <<-'NOEXPAND'
                  "NOEXPAND" false true 0 "\tdon't expand $NAME\n"
                42-45 RUN <<COPY
                  "COPY" true false 0 "echo hello world\necho foo bar\n"
                47-51 RUN <<COMMENT
                  "COMMENT" true false 0 "# internal comment\necho hello world\necho foo bar # trailing comment\n"
                53-55 RUN --mount=type=cache,target=/foo <<MOUNT
                  "MOUNT" true false 0 "echo hello\n"
                57-61 COPY <<FILE1 <<FILE2 /dest
                  "FILE1" true false 0 "content 1\n"
                  "FILE2" true false 0 "content 2\n"
                63-66 COPY <<EOF /quotes
                  "EOF" true false 0 "\"foo\"\n'bar'\n"
                68-72 COPY <<X <<Y /dest
                  "X" true false 0 "Y\n"
                  "Y" true false 0 "X\n"
                74-76 RUN <<COMPLEX python3
                  "COMPLEX" true false 0 "print('hello world')\n"
                78-80 COPY <<file.txt /dest
                  "file.txt" true false 0 "hello world\n"
                82-84 RUN <<eo'f'
                  "eof" false false 0 "echo foo\n"
                86-88 RUN <<eo\'f
                  "eo'f" true false 0 "echo foo\n"
                90-92 RUN <<'e'o\'f
                  "eo'f" false false 0 "echo foo\n"
                94-96 RUN <<'one two'
                  "one two" false false 0 "echo bar\n"
                98-99 RUN <<$EOF
                  "$EOF" true false 0 ""
                101-102 RUN <<  EOF
                  "EOF" true false 0 ""
                104-105 RUN <<  EOF  > foo
                  "EOF" true false 0 ""
            "##]],
        );
    }

    #[test]
    fn heredoc_placement() {
        // Only shell-form RUN, COPY and ADD, also under ONBUILD, open heredocs; their bodies are
        // not instructions, and the escape directive does not apply to them.
        check_heredocs(
            "# escape=`\nFROM x\nRUN [\"<<EOF\"]\nRUN [\"<<'EOF'\"]\nONBUILD ADD <<EOF /a\nRUN `\nEOF\nCMD <<EOF\nRUN <<EOF `\n  <<A\nB\nEOF\nA\n",
            expect![[r#"
                2-2 FROM x
                3-3 RUN ["<<EOF"]
                4-4 RUN ["<<'EOF'"]
                5-7 ONBUILD ADD <<EOF /a
                  "EOF" true false 0 "RUN `\n"
                8-8 CMD <<EOF
                9-13 RUN <<EOF   <<A
                  "EOF" true false 0 "B\n"
                  "A" true false 0 ""
            "#]],
        );
        check_heredocs(
            "FROM x\nRUN <<-EOF\r\n\t\ta\r\n\t\tEOF\r\nRUN 'a <<EOF\nRUN <<EOF\nEOF",
            expect![[r#"
            1-1 FROM x
            2-4 RUN <<-EOF
              "EOF" true true 0 "\t\ta\r\n"
            5-5 RUN 'a <<EOF
            6-7 RUN <<EOF
              "EOF" true false 0 ""
        "#]],
        );
        check("FROM x\nRUN <<A <<B\nA\nb\n", expect!["error at 2-4: unterminated heredoc"]);
        // An unclosed quote hides the heredoc, whose terminator is then an instruction.
        check(
            "FROM x\nRUN <<'A\nA\n",
            expect![[r#"
            (from "x")
            (run "<<'A")
            (a "")"#]],
        );
    }

    #[test]
    fn chomp() {
        assert_eq!(chomp_heredoc_content("\thello\n\tworld\n"), "hello\nworld\n");
        assert_eq!(chomp_heredoc_content("\t\ta\t\n \tb\n\t"), "a\t\n \tb\n");
    }

    #[test]
    fn parse_heredoc_words() {
        for word in ["<<EOF", "<<'EOF'", r#"<<"EOF""#, "<<-EOF", "<<-'EOF'", r#"<<-"EOF""#, r#"<<EO"F""#, "<< EOF", "<<- EOF"] {
            assert_eq!(parse_heredoc(word).map(|heredoc| heredoc.map(|h| h.name)), Ok(Some("EOF".to_string())), "{word}");
        }
        for word in ["", "EOF", "<<", "<<-", "<EOF", "<<<EOF", "<<EOF sh"] {
            assert_eq!(parse_heredoc(word), Ok(None), "{word}");
        }
        let errors: Vec<String> =
            ["<<'EOF", "<<\"EOF", "<<EOF'", "<<EOF\"", "<<${", "<<${a:#b}"].iter().filter_map(|word| parse_heredoc(word).err()).collect();
        expect![[r#"
            failed to process "'EOF": unexpected end of statement while looking for matching single-quote
            failed to process "\"EOF": unexpected end of statement while looking for matching double-quote
            failed to process "EOF'": unexpected end of statement while looking for matching single-quote
            failed to process "EOF\"": unexpected end of statement while looking for matching double-quote
            failed to process "${": syntax error: missing '}'
            failed to process "${a:#b}": unsupported modifier (:#) in substitution"#]]
        .assert_eq(&errors.join("\n"));
        let heredoc = parse_heredoc("12<<-\t${a:-'b'}").ok().flatten().map(|h| (h.name, h.expand, h.chomp, h.file_descriptor));
        assert_eq!(heredoc, Some(("${a:-b}".to_string(), false, true, 12)));
        // With no variable set, a reference stays as written, and may be several words.
        assert_eq!(parse_heredoc("<<${a:-'b c'}"), Ok(None));
    }

    #[test]
    fn heredocs_from_lines() {
        let cases: [(&str, &[&str]); 10] = [
            ("RUN <<EOF", &["EOF"]),
            ("RUN <<-EOF", &["EOF"]),
            ("RUN <<EOF", &["EOF"]),
            // A blank after `<<-` splits the word, unlike one after `<<`.
            ("RUN <<- EOF", &[]),
            ("RUN << -EOF", &["-EOF"]),
            ("RUN <<'EOF'", &["EOF"]),
            ("RUN 4<<EOF", &["EOF"]),
            ("RUN <<EOF <<EOF2", &["EOF", "EOF2"]),
            ("RUN '<<EOF'", &[]),
            (r#"RUN "<<EOF""#, &[]),
        ];
        for (line, names) in cases {
            let found = heredocs_from_line(line).map(|heredocs| heredocs.into_iter().map(|h| h.name).collect::<Vec<_>>());
            assert_eq!(found, Ok(names.iter().map(|s| s.to_string()).collect()), "{line}");
        }
    }

    #[test]
    fn errors() {
        check("", expect!["error at 0-0: file with no instructions"]);
        check("# a\n\n  \n", expect!["error at 3-3: file with no instructions"]);
        check("FROM x\nENV \\\n  a\n", expect!["error at 2-3: ENV must have two arguments"]);
        check("FROM x\nLABEL a", expect!["error at 2-2: LABEL must have two arguments"]);
    }

    #[test]
    fn deeply_nested_references_open_no_heredoc() {
        use super::super::shell::MAX_REFERENCE_DEPTH;
        let dockerfile = |depth: usize| format!("FROM x\nRUN <<EOF {}{}\nEOF\n", "${a:-".repeat(depth), "}".repeat(depth));
        assert_eq!(parsed(&dockerfile(MAX_REFERENCE_DEPTH)).nodes[1].heredocs.len(), 1);
        assert_eq!(parsed(&dockerfile(MAX_REFERENCE_DEPTH + 1)).nodes[1].heredocs.len(), 0);
    }

    #[test]
    fn long_onbuild_chains_do_not_recurse() {
        let dockerfile = format!("FROM x\n{}RUN a\n", "ONBUILD ".repeat(8000));
        let expected = format!("(from \"x\")\n({}run \"a\"{})", "onbuild (".repeat(8000), ")".repeat(8000));
        assert_eq!(parsed(&dockerfile).dump(), expected);
    }
}
