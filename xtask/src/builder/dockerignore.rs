//! `.dockerignore`, applied as `docker buildx build` applies it, so that the native builder
//! copies exactly the files a BuildKit build would find in its context. Docker's behaviour is
//! the specification, so this is a port of the code that implements it rather than a reading of
//! the documentation (which leaves out most of what follows):
//!
//! - which file: BuildKit's `frontend/dockerui` (`ReadEntrypoint`, `dockerIgnorePatterns`) reads
//!   `<Dockerfile name>.dockerignore` beside the Dockerfile and, only when there is none, the
//!   context's `.dockerignore`; the first replaces the second, they are never merged.
//! - the lines: `moby/patternmatcher/ignorefile.ReadAll` drops a UTF-8 BOM, lines that begin with
//!   `#` (before any trimming), and blank lines; trims each line, then the pattern after a `!`;
//!   cleans the pattern as Go's `filepath.Clean` does and drops one leading `/`.
//! - the patterns: `moby/patternmatcher.New` trims and cleans each pattern again, refuses a lone
//!   `!`, and refuses what Go's `filepath.Match` calls malformed. A pattern is then compared
//!   exactly, as a prefix (`dir/**`), as a suffix (`**/name`), or through the Go regular
//!   expression it is translated to (`*` is `[^/]*`, `?` is `[^/]`, `**` is `(.*/)?` or `.*`,
//!   classes and `\` escapes are passed to Go's regexp as they are): Go's regexp, not
//!   `filepath.Match`, decides what `[...]` and `\x` mean.
//! - the walk: tonistiigi/fsutil's `filterFS.Walk` matches each path with its parent directory's
//!   per-pattern results (`MatchesUsingParentResults`); the last pattern that matches decides,
//!   and an exception is only tried while the path is excluded. An excluded directory is walked
//!   only when an exception could re-include something under it; it is then sent just before
//!   the first entry under it that is sent, and not at all when nothing is.
//!
//! Read at moby/patternmatcher 5a6d842 (v0.6.1, what BuildKit vendors), moby/buildkit 73ed682 and
//! tonistiigi/fsutil 6d9dc2e, with Go's `path/filepath` and `regexp/syntax` for what they call.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use anyhow::{anyhow, Context, Result};

/// The patterns of the ignore file BuildKit would use, in file order.
#[derive(Debug, Default)]
pub struct Dockerignore {
    patterns: Vec<Pattern>,
    /// fsutil's `onlyPrefixExcludeExceptions`: no exception has a wildcard once a trailing `/**`
    /// or `/*` is dropped, so fsutil walks an excluded directory only when an exception names a
    /// path under it (and, with a wildcard anywhere, walks every excluded directory).
    prefix_exceptions: bool,
}

impl Dockerignore {
    /// The ignore file BuildKit would use for this Dockerfile: `<dockerfile file name>.dockerignore`
    /// beside it, else `<context>/.dockerignore`, else none. Errors (anyhow, lower-case, naming the
    /// file and line) for an unreadable file or an invalid pattern.
    ///
    /// A file that exists wins even when it is empty, as with the Dockerfile frontend built into
    /// BuildKit (a `# syntax=` frontend receives an empty file as no file at all). Something that
    /// is not a regular file is passed over, as BuildKit ignores its failure to read it.
    pub fn read(context: &Path, dockerfile: &Path) -> Result<Dockerignore> {
        let mut candidates = Vec::new();
        if let Some(name) = dockerfile.file_name() {
            let mut ignore_name = name.to_os_string();
            ignore_name.push(".dockerignore");
            candidates.push(dockerfile.with_file_name(ignore_name));
        }
        candidates.push(context.join(".dockerignore"));
        for path in candidates {
            if let Some(bytes) = read_regular_file(&path)? {
                // Go reads bytes; here an invalid UTF-8 sequence becomes U+FFFD.
                return Dockerignore::parse(&String::from_utf8_lossy(&bytes)).map_err(|err| anyhow!("{}: {err}", path.display()));
            }
        }
        Ok(Dockerignore::default())
    }

    /// The patterns of an ignore file's text; errors name the line.
    pub fn parse(text: &str) -> Result<Dockerignore> {
        read_all(text).and_then(Dockerignore::from_patterns).map_err(|err| anyhow!("line {}: {}", err.line, err.message))
    }

    /// Whether `path` (relative to the context, `/`-separated, no leading `./`) is left out of the
    /// transferred context — exactly as fsutil's walk decides, parents' results included.
    ///
    /// For a directory, `true` means it is not sent for its own sake: it is still sent, as a
    /// parent, when [`Dockerignore::may_include_under`] lets the walk in and something under it is
    /// sent. The context root (`""` or `.`) is never excluded: the walk does not match it.
    pub fn excludes(&self, path: &str) -> bool {
        if self.patterns.is_empty() || path.is_empty() || path == "." {
            return false;
        }
        let mut parent: Option<Vec<bool>> = None;
        for dir in ancestors(path) {
            let (excluded, matched) = self.matches(&dir, parent.as_deref());
            // fsutil returns filepath.SkipDir here, so nothing under `dir` is even matched.
            if excluded && !self.may_include_under(&dir) {
                return true;
            }
            parent = Some(matched);
        }
        self.matches(path, parent.as_deref()).0
    }

    /// Whether a directory that is itself excluded must still be walked because an exception
    /// could re-include something under it (fsutil's logic). Asked only of an excluded directory.
    pub fn may_include_under(&self, dir: &str) -> bool {
        if !self.prefix_exceptions {
            return true;
        }
        let dir_slash = format!("{dir}/");
        self.patterns
            .iter()
            .filter(|pattern| pattern.exclusion)
            .any(|pattern| format!("{}/", without_trailing_glob(&pattern.text)).starts_with(&dir_slash))
    }

    /// patternmatcher's `New` over `(line, pattern)`s as `ReadAll` returns them.
    fn from_patterns(lines: Vec<(usize, String)>) -> Result<Dockerignore, LineError> {
        let mut patterns = Vec::new();
        for (line, text) in lines {
            if let Some(pattern) =
                Pattern::new(&text).map_err(|reason| LineError { line, message: format!("`{text}` is not a valid pattern: {reason}") })?
            {
                patterns.push(pattern);
            }
        }
        let prefix_exceptions = patterns
            .iter()
            .filter(|pattern| pattern.exclusion)
            .all(|pattern| !without_trailing_glob(&pattern.text).contains(GLOB_CHARACTERS));
        Ok(Dockerignore { patterns, prefix_exceptions })
    }

    /// patternmatcher's `MatchesUsingParentResults`: whether `path` is excluded, and which
    /// patterns matched it, for its children. A pattern that matched the parent matches the child
    /// without being tried; one skipped because of the state so far (an exception while nothing
    /// excludes the path, a pattern while something does) counts as not matching. Without the
    /// parent's results the parent directories are tried instead (`MatchesOrParentMatches`).
    fn matches(&self, path: &str, parent: Option<&[bool]>) -> (bool, Vec<bool>) {
        let mut excluded = false;
        let mut matched = vec![false; self.patterns.len()];
        for (index, pattern) in self.patterns.iter().enumerate() {
            let mut hit = parent.is_some_and(|parent| parent[index]);
            if !hit {
                if pattern.exclusion != excluded {
                    continue;
                }
                hit = pattern.matches(path) || (parent.is_none() && ancestors(path).iter().any(|dir| pattern.matches(dir)));
            }
            matched[index] = hit;
            if hit {
                excluded = !pattern.exclusion;
            }
        }
        (excluded, matched)
    }
}

/// A problem with one line of an ignore file; the caller names the file.
#[derive(Debug)]
struct LineError {
    line: usize,
    message: String,
}

/// fsutil's `patternChars` on Unix: what makes an exception more than a path prefix.
const GLOB_CHARACTERS: [char; 6] = ['*', '[', ']', '?', '^', '\\'];

/// fsutil's `patternWithoutTrailingGlob`: `dir/**` and `dir/*` reach no deeper than `dir` does.
fn without_trailing_glob(text: &str) -> &str {
    let text = text.strip_suffix("/**").unwrap_or(text);
    text.strip_suffix("/*").unwrap_or(text)
}

/// The parent directories of `path`, outermost first, as patternmatcher splits `filepath.Dir`.
fn ancestors(path: &str) -> Vec<String> {
    let parent = gopath::dir(path);
    if parent == "." {
        return Vec::new();
    }
    parent.match_indices('/').map(|(end, _)| parent[..end].to_string()).chain(std::iter::once(parent.clone())).collect()
}

/// The contents of `path` when it is a regular file (links followed), `None` when there is
/// nothing there or something BuildKit could not read as a file.
fn read_regular_file(path: &Path) -> Result<Option<Vec<u8>>> {
    let cannot_read = || format!("cannot read {}", path.display());
    match fs::metadata(path) {
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(cannot_read),
        Ok(metadata) if !metadata.is_file() => Ok(None),
        Ok(_) => fs::read(path).map(Some).with_context(cannot_read),
    }
}

/// Go's `bufio.Scanner` refuses a line this long (not counting its `\n`), and `ReadAll` with it
/// the whole file.
const MAX_LINE: usize = 64 * 1024;

/// ignorefile's `ReadAll`: the file's patterns with their line numbers, a `!` kept in front.
fn read_all(text: &str) -> Result<Vec<(usize, String)>, LineError> {
    let mut lines: Vec<&str> = text.split('\n').collect();
    // bufio.ScanLines yields no empty line after a final newline.
    if lines.last().is_some_and(|line| line.is_empty()) {
        lines.pop();
    }
    let mut patterns = Vec::new();
    for (index, raw) in lines.into_iter().enumerate() {
        let line = index + 1;
        if raw.len() >= MAX_LINE {
            let message = format!(
                "the line is {} bytes long, and BuildKit reads lines of at most {} (bufio.Scanner: token too long)",
                raw.len(),
                MAX_LINE - 1
            );
            return Err(LineError { line, message });
        }
        let raw = if index == 0 { raw.strip_prefix('\u{feff}').unwrap_or(raw) } else { raw };
        let text = raw.strip_suffix('\r').unwrap_or(raw);
        // A comment only in the first column: "  # x" is the pattern "# x".
        if text.starts_with('#') {
            continue;
        }
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let (exception, text) = match text.strip_prefix('!') {
            Some(rest) => (true, rest.trim()),
            None => (false, text),
        };
        let mut pattern = String::new();
        if exception {
            pattern.push('!');
        }
        if !text.is_empty() {
            let cleaned = gopath::clean(text);
            pattern.push_str(cleaned.strip_prefix('/').filter(|rest| !rest.is_empty()).unwrap_or(&cleaned));
        }
        patterns.push((line, pattern));
    }
    Ok(patterns)
}

#[derive(Debug)]
struct Pattern {
    /// The cleaned pattern, without its `!`.
    text: String,
    /// `!`: an exception, which re-includes what it matches.
    exclusion: bool,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Exact,
    /// `dir/**` (nothing but literal characters before the `**`): what starts with `dir/`.
    Prefix,
    /// `**/name` (the `**` first): what ends with `/name`, and `name` itself.
    Suffix,
    Regexp(goregexp::Regexp),
}

/// How patternmatcher's `compile` translates a pattern, before Go parses the expression.
#[derive(Debug, PartialEq)]
enum Translation {
    Exact,
    Prefix,
    Suffix,
    Regexp(String),
}

impl Pattern {
    /// patternmatcher's `New` for one pattern: `None` for a pattern that trims to nothing.
    /// Go compiles the regular expression on the first match, and fails that match and the walk;
    /// here it is compiled at once, so that a pattern Docker would choke on is refused up front.
    fn new(text: &str) -> Result<Option<Pattern>, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let cleaned = gopath::clean(text);
        let (exclusion, text) = match cleaned.strip_prefix('!') {
            Some("") => return Err(r#"illegal exclusion pattern: "!" (a `!` needs a pattern after it)"#.to_string()),
            Some(rest) => (true, rest),
            None => (false, cleaned.as_str()),
        };
        if !gopath::is_valid_pattern(text) {
            return Err("syntax error in pattern (Go's filepath.Match rejects it: an unclosed or empty `[...]`, a range without an end, or a trailing `\\`)".to_string());
        }
        let kind = match translate(text) {
            Translation::Exact => Kind::Exact,
            Translation::Prefix => Kind::Prefix,
            Translation::Suffix => Kind::Suffix,
            Translation::Regexp(source) => Kind::Regexp(goregexp::Regexp::new(&source).map_err(|err| match err {
                goregexp::Error::Syntax(err) => {
                    format!("it becomes the Go regexp `{source}`, which Go rejects ({err}), so BuildKit fails with \"syntax error in pattern\"")
                }
                goregexp::Error::UnicodeClass(class) => format!(
                    "it becomes the Go regexp `{source}`, whose Unicode class `{class}` this builder does not reproduce: list the characters in a `[...]` instead"
                ),
            })?),
        };
        Ok(Some(Pattern { text: text.to_string(), exclusion, kind }))
    }

    /// patternmatcher's `Pattern.match`. The comparisons are byte-wise, as Go compares strings.
    fn matches(&self, path: &str) -> bool {
        let text = self.text.as_bytes();
        match &self.kind {
            Kind::Exact => path == self.text,
            Kind::Prefix => path.as_bytes().starts_with(&text[..text.len() - 2]),
            Kind::Suffix => {
                let suffix = &text[2..];
                path.as_bytes().ends_with(suffix) || suffix.strip_prefix(b"/").is_some_and(|name| path.as_bytes() == name)
            }
            Kind::Regexp(regexp) => regexp.is_match(path),
        }
    }
}

/// patternmatcher's `compile`: the pattern as a Go regular expression, unless a comparison does.
/// Only `.+()|{}$` are escaped; `[`, `]`, `^` and a `\` with what follows it reach Go's regexp
/// parser as they are, which is why `\d` is a digit there and `a^b*` can never match.
fn translate(pattern: &str) -> Translation {
    let mut regexp = String::from("^");
    let mut translation = Translation::Exact;
    let mut is_regexp = false;
    // Go's text/scanner skips a byte order mark, but only as the very first character.
    let mut chars = pattern.strip_prefix('\u{feff}').unwrap_or(pattern).chars().peekable();
    let mut first = true;
    while let Some(ch) = chars.next() {
        match ch {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                // `**/` is `**`.
                chars.next_if_eq(&'/');
                if chars.peek().is_none() {
                    // A trailing `**` accepts everything (as in .gitignore).
                    if translation == Translation::Exact && !is_regexp {
                        translation = Translation::Prefix;
                    } else {
                        regexp.push_str(".*");
                        is_regexp = true;
                    }
                } else {
                    // Any number of directories, none included.
                    regexp.push_str("(.*/)?");
                    is_regexp = true;
                }
                if first {
                    translation = Translation::Suffix;
                    is_regexp = false;
                }
            }
            '*' => {
                regexp.push_str("[^/]*");
                is_regexp = true;
            }
            '?' => {
                regexp.push_str("[^/]");
                is_regexp = true;
            }
            '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' => {
                regexp.push('\\');
                regexp.push(ch);
            }
            '\\' => {
                // Always followed by something: filepath.Match refuses a trailing `\`.
                if let Some(escaped) = chars.next() {
                    regexp.push('\\');
                    regexp.push(escaped);
                    is_regexp = true;
                }
            }
            '[' | ']' => {
                regexp.push(ch);
                is_regexp = true;
            }
            _ => regexp.push(ch),
        }
        first = false;
    }
    if is_regexp {
        regexp.push('$');
        Translation::Regexp(regexp)
    } else {
        translation
    }
}

/// What patternmatcher takes from Go's `path/filepath` (Unix flavour).
mod gopath {
    /// `filepath.Clean`: the shortest equivalent path, `.` and `..` elements resolved lexically.
    pub fn clean(path: &str) -> String {
        if path.is_empty() {
            return ".".to_string();
        }
        let rooted = path.starts_with('/');
        let mut elements: Vec<&str> = Vec::new();
        // Leading `..` elements, which a later `..` cannot remove.
        let mut fixed = 0;
        for element in path.split('/') {
            match element {
                "" | "." => {}
                ".." if elements.len() > fixed => {
                    elements.pop();
                }
                // `/..` is `/`.
                ".." if rooted => {}
                ".." => {
                    elements.push("..");
                    fixed = elements.len();
                }
                _ => elements.push(element),
            }
        }
        let joined = elements.join("/");
        match (rooted, joined.is_empty()) {
            (true, _) => format!("/{joined}"),
            (false, true) => ".".to_string(),
            (false, false) => joined,
        }
    }

    /// `filepath.Dir`: all but the last element, cleaned.
    pub fn dir(path: &str) -> String {
        clean(path.rfind('/').map_or("", |end| &path[..=end]))
    }

    /// Whether `filepath.Match(pattern, ".")` returns no error, as patternmatcher's `New`
    /// requires. Go checks every chunk of the pattern whatever the name, so the name is not read.
    pub fn is_valid_pattern(pattern: &str) -> bool {
        let mut rest = pattern.as_bytes();
        while !rest.is_empty() {
            let (chunk, after) = scan_chunk(rest);
            if !is_valid_chunk(chunk) {
                return false;
            }
            rest = after;
        }
        true
    }

    /// `scanChunk`: past leading stars, up to the next star outside a `[...]`.
    fn scan_chunk(pattern: &[u8]) -> (&[u8], &[u8]) {
        let start = pattern.iter().take_while(|&&byte| byte == b'*').count();
        let pattern = &pattern[start..];
        let mut in_range = false;
        let mut index = 0;
        while index < pattern.len() {
            match pattern[index] {
                b'\\' if index + 1 < pattern.len() => index += 1,
                b'[' => in_range = true,
                b']' => in_range = false,
                b'*' if !in_range => break,
                _ => {}
            }
            index += 1;
        }
        pattern.split_at(index)
    }

    /// The syntax checks of `matchChunk`.
    fn is_valid_chunk(mut chunk: &[u8]) -> bool {
        while let Some(&byte) = chunk.first() {
            chunk = &chunk[1..];
            match byte {
                b'[' => {
                    if chunk.first() == Some(&b'^') {
                        chunk = &chunk[1..];
                    }
                    let mut ranges = 0;
                    loop {
                        if chunk.first() == Some(&b']') && ranges > 0 {
                            chunk = &chunk[1..];
                            break;
                        }
                        let Some(after_low) = range_character(chunk) else { return false };
                        chunk = after_low;
                        if chunk[0] == b'-' {
                            let Some(after_high) = range_character(&chunk[1..]) else { return false };
                            chunk = after_high;
                        }
                        ranges += 1;
                    }
                }
                b'\\' => match chunk.split_first() {
                    Some((_, rest)) => chunk = rest,
                    None => return false,
                },
                _ => {}
            }
        }
        true
    }

    /// `getEsc`: what follows one possibly escaped character of a `[...]`; `None` when that is
    /// malformed, or when nothing follows it (the class is not closed).
    fn range_character(chunk: &[u8]) -> Option<&[u8]> {
        let chunk = match chunk.first()? {
            b'-' | b']' => return None,
            b'\\' => &chunk[1..],
            _ => chunk,
        };
        // A class starts on a character boundary of valid UTF-8, so the first byte tells the width.
        let width = match *chunk.first()? {
            0..=0x7f => 1,
            0x80..=0xdf => 2,
            0xe0..=0xef => 3,
            _ => 4,
        };
        chunk.get(width..).filter(|rest| !rest.is_empty())
    }
}

/// The part of Go's `regexp` (`regexp.Compile`: Perl flags, so `.` stops at `\n`, `[^...]` does
/// not, `^` and `$` are the ends of the text, and a match may start anywhere) that patternmatcher's
/// expressions can reach, run as a Thompson NFA so that no pattern can take exponential time.
mod goregexp {
    use std::fmt;

    pub struct Regexp {
        program: Vec<Inst>,
    }

    impl fmt::Debug for Regexp {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "Regexp({} instructions)", self.program.len())
        }
    }

    #[derive(Debug)]
    pub enum Error {
        /// Go refuses the expression; the text is Go's message.
        Syntax(String),
        /// `\pL` and the like: Go accepts them, but their tables are not in Rust's std.
        UnicodeClass(String),
    }

    /// Inclusive ranges of code points.
    type Ranges = Vec<(u32, u32)>;

    #[derive(Clone, Copy, Debug)]
    enum Assertion {
        BeginText,
        EndText,
        WordBoundary,
        NoWordBoundary,
    }

    enum Node {
        Chars(Ranges),
        AnyButNewline,
        Assert(Assertion),
        Concat(Vec<Node>),
        Star(Box<Node>),
        Quest(Box<Node>),
    }

    enum Inst {
        Chars(Ranges),
        AnyButNewline,
        Assert(Assertion),
        Split(usize, usize),
        Jump(usize),
        Match,
    }

    fn syntax(code: &str, expr: &str) -> Error {
        Error::Syntax(format!("error parsing regexp: {code}: `{expr}`"))
    }

    impl Regexp {
        pub fn new(source: &str) -> Result<Regexp, Error> {
            let mut program = Vec::new();
            emit(&parse(source)?, &mut program);
            program.push(Inst::Match);
            Ok(Regexp { program })
        }

        /// Go's `MatchString`: whether the expression matches anywhere in `text`.
        pub fn is_match(&self, text: &str) -> bool {
            let chars: Vec<char> = text.chars().collect();
            let mut current = Threads::new(self.program.len());
            let mut next = Threads::new(self.program.len());
            for position in 0..=chars.len() {
                self.add(&mut current, 0, position, &chars);
                for &pc in &current.pcs {
                    let advances = match &self.program[pc] {
                        Inst::Match => return true,
                        Inst::Chars(ranges) => chars.get(position).is_some_and(|&ch| contains(ranges, ch)),
                        Inst::AnyButNewline => chars.get(position).is_some_and(|&ch| ch != '\n'),
                        // Followed when the thread was added.
                        Inst::Assert(_) | Inst::Split(..) | Inst::Jump(_) => false,
                    };
                    if advances {
                        self.add(&mut next, pc + 1, position + 1, &chars);
                    }
                }
                std::mem::swap(&mut current, &mut next);
                next.clear();
            }
            false
        }

        /// Adds the thread at `pc` and, through jumps, splits and assertions that hold at
        /// `position`, every instruction it reaches without reading a character.
        fn add(&self, threads: &mut Threads, pc: usize, position: usize, chars: &[char]) {
            if threads.seen[pc] {
                return;
            }
            threads.seen[pc] = true;
            threads.pcs.push(pc);
            match self.program[pc] {
                Inst::Jump(to) => self.add(threads, to, position, chars),
                Inst::Split(first, second) => {
                    self.add(threads, first, position, chars);
                    self.add(threads, second, position, chars);
                }
                Inst::Assert(assertion) if holds(assertion, position, chars) => self.add(threads, pc + 1, position, chars),
                _ => {}
            }
        }
    }

    struct Threads {
        pcs: Vec<usize>,
        seen: Vec<bool>,
    }

    impl Threads {
        fn new(len: usize) -> Threads {
            Threads { pcs: Vec::new(), seen: vec![false; len] }
        }

        fn clear(&mut self) {
            self.pcs.clear();
            self.seen.fill(false);
        }
    }

    fn contains(ranges: &Ranges, ch: char) -> bool {
        ranges.iter().any(|&(low, high)| (low..=high).contains(&(ch as u32)))
    }

    /// Go's `\b` knows ASCII word characters only.
    fn is_word(ch: Option<&char>) -> bool {
        ch.is_some_and(|ch| ch.is_ascii_alphanumeric() || *ch == '_')
    }

    fn holds(assertion: Assertion, position: usize, chars: &[char]) -> bool {
        let boundary = || is_word(position.checked_sub(1).and_then(|before| chars.get(before))) != is_word(chars.get(position));
        match assertion {
            Assertion::BeginText => position == 0,
            Assertion::EndText => position == chars.len(),
            Assertion::WordBoundary => boundary(),
            Assertion::NoWordBoundary => !boundary(),
        }
    }

    fn emit(node: &Node, program: &mut Vec<Inst>) {
        match node {
            Node::Chars(ranges) => program.push(Inst::Chars(ranges.clone())),
            Node::AnyButNewline => program.push(Inst::AnyButNewline),
            Node::Assert(assertion) => program.push(Inst::Assert(*assertion)),
            Node::Concat(nodes) => nodes.iter().for_each(|node| emit(node, program)),
            Node::Star(sub) => {
                let split = program.len();
                program.push(Inst::Jump(split));
                emit(sub, program);
                program.push(Inst::Jump(split));
                program[split] = Inst::Split(split + 1, program.len());
            }
            Node::Quest(sub) => {
                let split = program.len();
                program.push(Inst::Jump(split));
                emit(sub, program);
                program[split] = Inst::Split(split + 1, program.len());
            }
        }
    }

    /// `syntax.Parse`. patternmatcher escapes `+`, `|` and `{` wherever the pattern has them, so
    /// unescaped they never reach the parser, and neither do `(?`, `*?` or stacked repetitions.
    fn parse(source: &str) -> Result<Node, Error> {
        // The open groups, innermost last.
        let mut stack: Vec<Vec<Node>> = vec![Vec::new()];
        let mut rest = source;
        while let Some(ch) = rest.chars().next() {
            let after = &rest[ch.len_utf8()..];
            rest = match ch {
                '(' => {
                    stack.push(Vec::new());
                    after
                }
                ')' => {
                    let group = stack.pop().unwrap_or_default();
                    let Some(outer) = stack.last_mut() else { return Err(syntax("unexpected )", source)) };
                    outer.push(Node::Concat(group));
                    after
                }
                _ => {
                    let nodes = stack.last_mut().expect("only a `)` closes a group, and never the outermost");
                    match ch {
                        '^' => nodes.push(Node::Assert(Assertion::BeginText)),
                        '$' => nodes.push(Node::Assert(Assertion::EndText)),
                        '.' => nodes.push(Node::AnyButNewline),
                        '*' | '?' => {
                            let Some(operand) = nodes.pop() else {
                                return Err(syntax("missing argument to repetition operator", &rest[..1]));
                            };
                            nodes.push(if ch == '*' { Node::Star(Box::new(operand)) } else { Node::Quest(Box::new(operand)) });
                        }
                        '[' => {
                            let (ranges, after) = parse_class(rest)?;
                            nodes.push(Node::Chars(ranges));
                            rest = after;
                            continue;
                        }
                        '\\' => {
                            rest = parse_escape_outside_class(rest, nodes)?;
                            continue;
                        }
                        _ => nodes.push(literal(ch as u32)),
                    }
                    after
                }
            };
        }
        let [nodes] = <[Vec<Node>; 1]>::try_from(stack).map_err(|_| syntax("missing closing )", source))?;
        Ok(Node::Concat(nodes))
    }

    fn literal(code: u32) -> Node {
        Node::Chars(vec![(code, code)])
    }

    /// A `\` outside a class: Perl's assertions and `\Q...\E`, then as in a class.
    fn parse_escape_outside_class<'a>(rest: &'a str, nodes: &mut Vec<Node>) -> Result<&'a str, Error> {
        let assertion = match rest.as_bytes().get(1) {
            Some(b'A') => Some(Assertion::BeginText),
            Some(b'z') => Some(Assertion::EndText),
            Some(b'b') => Some(Assertion::WordBoundary),
            Some(b'B') => Some(Assertion::NoWordBoundary),
            Some(b'C') => return Err(syntax("invalid escape sequence", "\\C")),
            Some(b'Q') => {
                let (quoted, after) = rest[2..].split_once("\\E").unwrap_or((&rest[2..], ""));
                nodes.extend(quoted.chars().map(|ch| literal(ch as u32)));
                return Ok(after);
            }
            _ => None,
        };
        if let Some(assertion) = assertion {
            nodes.push(Node::Assert(assertion));
            return Ok(&rest[2..]);
        }
        check_unicode_class(rest)?;
        if let Some((ranges, after)) = perl_class(rest) {
            nodes.push(Node::Chars(ranges));
            return Ok(after);
        }
        let (code, after) = parse_escape(rest)?;
        nodes.push(literal(code));
        Ok(after)
    }

    /// `parseClass`: `[` to `]`, with ranges, `[:name:]`, `\d`-style classes and escapes.
    fn parse_class(class: &str) -> Result<(Ranges, &str), Error> {
        let mut rest = &class[1..];
        let negated = rest.starts_with('^');
        if negated {
            rest = &rest[1..];
        }
        let mut ranges = Vec::new();
        // `]` first is a character.
        let mut first = true;
        while first || !rest.starts_with(']') {
            first = false;
            if rest.len() > 2 && rest.starts_with("[:") {
                if let Some((group, after)) = named_class(rest)? {
                    ranges.extend(group);
                    rest = after;
                    continue;
                }
            }
            check_unicode_class(rest)?;
            if let Some((group, after)) = perl_class(rest) {
                ranges.extend(group);
                rest = after;
                continue;
            }
            let start = rest;
            let (low, after) = class_char(rest, class)?;
            rest = after;
            let mut high = low;
            if rest.len() >= 2 && rest.starts_with('-') && rest.as_bytes()[1] != b']' {
                let (end, after) = class_char(&rest[1..], class)?;
                rest = after;
                if end < low {
                    return Err(syntax("invalid character class range", &start[..start.len() - rest.len()]));
                }
                high = end;
            }
            ranges.push((low, high));
        }
        let ranges = if negated { negate(ranges) } else { ranges };
        Ok((ranges, &rest[1..]))
    }

    fn class_char<'a>(rest: &'a str, class: &str) -> Result<(u32, &'a str), Error> {
        match rest.chars().next() {
            None => Err(syntax("missing closing ]", class)),
            Some('\\') => parse_escape(rest),
            Some(ch) => Ok((ch as u32, &rest[ch.len_utf8()..])),
        }
    }

    /// The complement of `ranges` among all code points.
    fn negate(mut ranges: Ranges) -> Ranges {
        ranges.sort_unstable();
        let mut complement = Vec::new();
        let mut next = 0;
        for (low, high) in ranges {
            if low > next {
                complement.push((next, low - 1));
            }
            next = next.max(high + 1);
        }
        if next <= 0x10ffff {
            complement.push((next, 0x10ffff));
        }
        complement
    }

    /// `parseNamedClass`: `[:alpha:]` and `[:^alpha:]`, ASCII only. Go looks for the closing `:]`
    /// anywhere further on, past the end of the class if need be.
    fn named_class(rest: &str) -> Result<Option<(Ranges, &str)>, Error> {
        let Some(end) = rest[2..].find(":]").map(|index| index + 4) else { return Ok(None) };
        let name = &rest[..end];
        let (negated, bare) = match name.strip_prefix("[:^") {
            Some(bare) => (true, bare),
            None => (false, &name[2..]),
        };
        let ranges: Ranges = match bare.strip_suffix(":]").unwrap_or(bare) {
            "alnum" => vec![(0x30, 0x39), (0x41, 0x5a), (0x61, 0x7a)],
            "alpha" => vec![(0x41, 0x5a), (0x61, 0x7a)],
            "ascii" => vec![(0x00, 0x7f)],
            "blank" => vec![(0x09, 0x09), (0x20, 0x20)],
            "cntrl" => vec![(0x00, 0x1f), (0x7f, 0x7f)],
            "digit" => vec![(0x30, 0x39)],
            "graph" => vec![(0x21, 0x7e)],
            "lower" => vec![(0x61, 0x7a)],
            "print" => vec![(0x20, 0x7e)],
            "punct" => vec![(0x21, 0x2f), (0x3a, 0x40), (0x5b, 0x60), (0x7b, 0x7e)],
            "space" => vec![(0x09, 0x0d), (0x20, 0x20)],
            "upper" => vec![(0x41, 0x5a)],
            "word" => vec![(0x30, 0x39), (0x41, 0x5a), (0x5f, 0x5f), (0x61, 0x7a)],
            "xdigit" => vec![(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)],
            _ => return Err(syntax("invalid character class range", name)),
        };
        Ok(Some((if negated { negate(ranges) } else { ranges }, &rest[end..])))
    }

    /// `parsePerlClassEscape`: `\d`, `\s`, `\w` and their negations, ASCII only.
    fn perl_class(rest: &str) -> Option<(Ranges, &str)> {
        let (ranges, negated): (Ranges, bool) = match rest.as_bytes() {
            [b'\\', class, ..] => match class {
                b'd' | b'D' => (vec![(0x30, 0x39)], *class == b'D'),
                b's' | b'S' => (vec![(0x09, 0x0a), (0x0c, 0x0d), (0x20, 0x20)], *class == b'S'),
                b'w' | b'W' => (vec![(0x30, 0x39), (0x41, 0x5a), (0x5f, 0x5f), (0x61, 0x7a)], *class == b'W'),
                _ => return None,
            },
            _ => return None,
        };
        Some((if negated { negate(ranges) } else { ranges }, &rest[2..]))
    }

    /// `parseUnicodeClass`. A `{` never follows the `\p` (patternmatcher escapes it), so the name
    /// is one letter: Go knows the general categories C, L, M, N, P, S and Z, and nothing else.
    fn check_unicode_class(rest: &str) -> Result<(), Error> {
        if !(rest.starts_with("\\p") || rest.starts_with("\\P")) {
            return Ok(());
        }
        let name = rest[2..].chars().next();
        let sequence = &rest[..2 + name.map_or(0, char::len_utf8)];
        match name {
            Some('C' | 'L' | 'M' | 'N' | 'P' | 'S' | 'Z') => Err(Error::UnicodeClass(sequence.to_string())),
            _ => Err(syntax("invalid character class range", sequence)),
        }
    }

    /// `parseEscape`: the code point of an escape such as `\.`, `\n`, `\x41` or `\101`.
    /// (`\x{...}` cannot occur: patternmatcher escapes the `{`.)
    fn parse_escape(escape: &str) -> Result<(u32, &str), Error> {
        let mut chars = escape[1..].chars();
        let Some(ch) = chars.next() else { return Err(syntax("trailing backslash at end of expression", "")) };
        let mut rest = chars.as_str();
        let is_octal = |rest: &str| rest.as_bytes().first().is_some_and(|byte| (b'0'..=b'7').contains(byte));
        let code = match ch {
            // A lone non-zero digit would be a backreference.
            '1'..='7' if !is_octal(rest) => None,
            '0'..='7' => {
                let mut code = ch as u32 - '0' as u32;
                for _ in 0..2 {
                    if !is_octal(rest) {
                        break;
                    }
                    code = code * 8 + u32::from(rest.as_bytes()[0] - b'0');
                    rest = &rest[1..];
                }
                Some(code)
            }
            'x' => {
                let mut digits = rest.chars();
                let high = digits.next().and_then(|digit| digit.to_digit(16));
                let low = digits.next().and_then(|digit| digit.to_digit(16));
                rest = digits.as_str();
                high.zip(low).map(|(high, low)| high * 16 + low)
            }
            'a' => Some(0x07),
            'f' => Some(0x0c),
            'n' => Some(0x0a),
            'r' => Some(0x0d),
            't' => Some(0x09),
            'v' => Some(0x0b),
            _ if ch.is_ascii() && !ch.is_ascii_alphanumeric() => Some(ch as u32),
            _ => None,
        };
        match code {
            Some(code) => Ok((code, rest)),
            None => Err(syntax("invalid escape sequence", &escape[..escape.len() - rest.len()])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    /// Each path of the context as fsutil's walk leaves it: `out` or `in`.
    fn check(patterns: &str, paths: &[&str], expected: Expect) {
        let ignore = Dockerignore::parse(patterns).unwrap();
        let verdicts: Vec<String> =
            paths.iter().map(|path| format!("{path}: {}", if ignore.excludes(path) { "out" } else { "in" })).collect();
        expected.assert_eq(&verdicts.join("\n"));
    }

    /// The entries fsutil sends for a context of `entries` (walk order, directories ending in
    /// `/`): an entry that is not excluded, preceded by the excluded directories above it that
    /// were walked but not yet sent (filter.go, `for i, parentDir := range parentDirs`: a
    /// directory skipped for its own sake is sent, with its own stat, just before the first
    /// entry under it that is sent).
    fn check_walk(patterns: &str, entries: &[&str], expected: Expect) {
        let ignore = Dockerignore::parse(patterns).unwrap();
        let mut sent: Vec<String> = Vec::new();
        for entry in entries {
            let path = entry.trim_end_matches('/');
            if ignore.excludes(path) {
                continue;
            }
            for dir in ancestors(path) {
                let dir = format!("{dir}/");
                if !sent.contains(&dir) {
                    sent.push(dir);
                }
            }
            sent.push(entry.to_string());
        }
        expected.assert_eq(&sent.join("\n"));
    }

    /// patternmatcher's `New` over a list of patterns, as its tests call it.
    fn matcher(patterns: &[&str]) -> Result<Dockerignore, String> {
        let lines = patterns.iter().enumerate().map(|(index, pattern)| (index + 1, pattern.to_string())).collect();
        Dockerignore::from_patterns(lines).map_err(|err| err.message)
    }

    /// `MatchesOrParentMatches`.
    fn matches_or_parent_matches(ignore: &Dockerignore, path: &str) -> bool {
        ignore.matches(path, None).0
    }

    /// `MatchesUsingParentResults`, fed its parents' results as patternmatcher's test does.
    fn matches_using_parent_results(ignore: &Dockerignore, path: &str) -> bool {
        let mut parent = None;
        for dir in ancestors(path) {
            parent = Some(ignore.matches(&dir, parent.as_deref()).1);
        }
        ignore.matches(path, parent.as_deref()).0
    }

    /// Every way of matching agrees with patternmatcher's expectation for each case; the
    /// mismatches, if any, are listed.
    fn assert_cases(cases: &[(&[&str], &str, bool)]) {
        let mut wrong = Vec::new();
        for &(patterns, path, expected) in cases {
            let ignore = matcher(patterns).unwrap();
            let results = [
                ("MatchesOrParentMatches", matches_or_parent_matches(&ignore, path)),
                ("MatchesUsingParentResults", matches_using_parent_results(&ignore, path)),
                ("walk", ignore.excludes(path)),
            ];
            for (how, result) in results {
                if result != expected {
                    wrong.push(format!("{patterns:?} {path:?}: {how} says {result}"));
                }
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    // patternmatcher_test.go: TestWildcardMatches, TestPatternMatches,
    // TestExclusionPatternMatchesPatternBefore, TestPatternMatchesFolderExclusions,
    // TestPatternMatchesFolderWithSlashExclusions, TestPatternMatchesFolderWildcardExclusions,
    // TestExclusionPatternMatchesPatternAfter, TestMatchesWithNoPatterns.
    #[test]
    fn single_cases() {
        assert_cases(&[
            (&["*"], "fileutils.go", true),
            (&["*.go"], "fileutils.go", true),
            (&["!fileutils.go", "*.go"], "fileutils.go", true),
            (&["docs", "!docs/README.md"], "docs/README.md", false),
            (&["docs/", "!docs/README.md"], "docs/README.md", false),
            (&["docs/*", "!docs/README.md"], "docs/README.md", false),
            (&["*.go", "!fileutils.go"], "fileutils.go", false),
            (&[], "/any/path/there", false),
        ]);
    }

    // TestExclusionPatternMatchesWholeDirectory: the context itself is never excluded.
    #[test]
    fn the_root_is_never_excluded() {
        let ignore = matcher(&["*.go"]).unwrap();
        assert!(!ignore.excludes("."));
        assert!(!matcher(&["**"]).unwrap().excludes(""));
    }

    // TestSingleExclamationError, TestCleanPatternsErrorSingleException,
    // TestMatchesWithMalformedPatterns.
    #[test]
    fn malformed_patterns_are_refused() {
        expect![[r#"`!` is not a valid pattern: illegal exclusion pattern: "!" (a `!` needs a pattern after it)"#]]
            .assert_eq(&matcher(&["!"]).unwrap_err());
        expect![[r#"`[` is not a valid pattern: syntax error in pattern (Go's filepath.Match rejects it: an unclosed or empty `[...]`, a range without an end, or a trailing `\`)"#]]
            .assert_eq(&matcher(&["["]).unwrap_err());
    }

    // TestMatches: each pattern alone, then the multi-pattern cases, through
    // MatchesOrParentMatches (which MatchesUsingParentResultsNoContext is too),
    // MatchesUsingParentResults, and fsutil's walk. (MatchesUsingParentResult, deprecated and
    // used by neither fsutil nor BuildKit, is not ported.)
    #[test]
    fn matches() {
        let single = [
            ("**", "file", true),
            ("**", "file/", true),
            ("**/", "file", true),
            ("**/", "file/", true),
            ("**", "/", true),
            ("**/", "/", true),
            ("**", "dir/file", true),
            ("**/", "dir/file", true),
            ("**", "dir/file/", true),
            ("**/", "dir/file/", true),
            ("**/**", "dir/file", true),
            ("**/**", "dir/file/", true),
            ("dir/**", "dir/file", true),
            ("dir/**", "dir/file/", true),
            ("dir/**", "dir/dir2/file", true),
            ("dir/**", "dir/dir2/file/", true),
            ("**/dir", "dir", true),
            ("**/dir", "dir/file", true),
            ("**/dir2/*", "dir/dir2/file", true),
            ("**/dir2/*", "dir/dir2/file/", true),
            ("**/dir2/**", "dir/dir2/dir3/file", true),
            ("**/dir2/**", "dir/dir2/dir3/file/", true),
            ("**file", "file", true),
            ("**file", "dir/file", true),
            ("**/file", "dir/file", true),
            ("**file", "dir/dir/file", true),
            ("**/file", "dir/dir/file", true),
            ("**/file*", "dir/dir/file", true),
            ("**/file*", "dir/dir/file.txt", true),
            ("**/file*txt", "dir/dir/file.txt", true),
            ("**/file*.txt", "dir/dir/file.txt", true),
            ("**/file*.txt*", "dir/dir/file.txt", true),
            ("**/**/*.txt", "dir/dir/file.txt", true),
            ("**/**/*.txt2", "dir/dir/file.txt", false),
            ("**/*.txt", "file.txt", true),
            ("**/**/*.txt", "file.txt", true),
            ("a**/*.txt", "a/file.txt", true),
            ("a**/*.txt", "a/dir/file.txt", true),
            ("a**/*.txt", "a/dir/dir/file.txt", true),
            ("a/*.txt", "a/dir/file.txt", false),
            ("a/*.txt", "a/file.txt", true),
            ("a/*.txt**", "a/file.txt", true),
            ("a[b-d]e", "ae", false),
            ("a[b-d]e", "ace", true),
            ("a[b-d]e", "aae", false),
            ("a[^b-d]e", "aze", true),
            (".*", ".foo", true),
            (".*", "foo", false),
            ("abc.def", "abcdef", false),
            ("abc.def", "abc.def", true),
            ("abc.def", "abcZdef", false),
            ("abc?def", "abcZdef", true),
            ("abc?def", "abcdef", false),
            ("a\\\\", "a\\", true),
            ("**/foo/bar", "foo/bar", true),
            ("**/foo/bar", "dir/foo/bar", true),
            ("**/foo/bar", "dir/dir2/foo/bar", true),
            ("abc/**", "abc", false),
            ("abc/**", "abc/def", true),
            ("abc/**", "abc/def/ghi", true),
            ("**/.foo", ".foo", true),
            ("**/.foo", "bar.foo", false),
            ("a(b)c/def", "a(b)c/def", true),
            ("a(b)c/def", "a(b)c/xyz", false),
            ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
            ("dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", true),
            ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", true),
            // Not on Windows, where `\` separates.
            ("a\\*b", "a*b", true),
        ];
        let patterns: Vec<[&str; 1]> = single.iter().map(|&(pattern, _, _)| [pattern]).collect();
        let cases: Vec<(&[&str], &str, bool)> =
            single.iter().zip(&patterns).map(|(&(_, path, pass), pattern)| (&pattern[..], path, pass)).collect();
        assert_cases(&cases);
        assert_cases(&[
            (&["**", "!util/docker/web"], "util/docker/web/foo", false),
            (&["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", true),
            (
                &["**", "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"],
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                false,
            ),
            (&["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", false),
        ]);
    }

    // TestCleanPatterns, TestCleanPatternsStripEmptyPatterns, TestCleanPatternsExceptionFlag,
    // TestCleanPatternsLeadingSpaceTrimmed, TestCleanPatternsTrailingSpaceTrimmed.
    #[test]
    fn clean_patterns() {
        assert_eq!(matcher(&["docs", "config"]).unwrap().patterns.len(), 2);
        assert_eq!(matcher(&["docs", "config", ""]).unwrap().patterns.len(), 2);
        for patterns in [["docs", "!docs/README.md"], ["docs", "  !docs/README.md"], ["docs", "!docs/README.md  "]] {
            let ignore = matcher(&patterns).unwrap();
            assert!(ignore.patterns.iter().any(|pattern| pattern.exclusion), "{patterns:?}");
        }
    }

    // TestMatch: Go's filepath.Match cases through the package-level Matches. Where Go's
    // filepath.Match and patternmatcher's regexp disagree, patternmatcher's answer is the one
    // tested, and these cases are where they agree.
    #[test]
    fn filepath_match_cases() {
        let valid = [
            ("abc", "abc", true),
            ("*", "abc", true),
            ("*c", "abc", true),
            ("a*", "a", true),
            ("a*", "abc", true),
            ("a*", "ab/c", true),
            ("a*/b", "abc/b", true),
            ("a*/b", "a/c/b", false),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", false),
            ("a*b?c*x", "abxbbxdbxebxczzx", true),
            ("a*b?c*x", "abxbbxdbxebxczzy", false),
            ("ab[c]", "abc", true),
            ("ab[b-d]", "abc", true),
            ("ab[e-g]", "abc", false),
            ("ab[^c]", "abc", false),
            ("ab[^b-d]", "abc", false),
            ("ab[^e-g]", "abc", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "ab", false),
            ("a?b", "a☺b", true),
            ("a[^a]b", "a☺b", true),
            ("a???b", "a☺b", false),
            ("a[^a][^a][^a]b", "a☺b", false),
            ("[a-ζ]*", "α", true),
            ("*[a-ζ]", "A", false),
            ("a?b", "a/b", false),
            ("a*b", "a/b", false),
            ("[\\]a]", "]", true),
            ("[\\-]", "-", true),
            ("[x\\-]", "x", true),
            ("[x\\-]", "-", true),
            ("[x\\-]", "z", false),
            ("[\\-x]", "x", true),
            ("[\\-x]", "-", true),
            ("[\\-x]", "a", false),
            ("*x", "xxx", true),
        ];
        let patterns: Vec<[&str; 1]> = valid.iter().map(|&(pattern, _, _)| [pattern]).collect();
        let cases: Vec<(&[&str], &str, bool)> =
            valid.iter().zip(&patterns).map(|(&(_, path, pass), pattern)| (&pattern[..], path, pass)).collect();
        assert_cases(&cases);

        let malformed = ["[]a]", "[-]", "[x-]", "[-x]", "\\", "[a-b-c]", "[", "[^", "[^bc", "a["];
        let accepted: Vec<&str> = malformed.into_iter().filter(|pattern| matcher(&[pattern]).is_ok()).collect();
        assert!(accepted.is_empty(), "accepted: {accepted:?}");
    }

    // TestCompile (the `/` flavour): the match type, and the expression a regexp match uses.
    #[test]
    fn translation() {
        let cases = [
            ("*", Translation::Regexp("^[^/]*$".into())),
            ("file*", Translation::Regexp("^file[^/]*$".into())),
            ("*file", Translation::Regexp("^[^/]*file$".into())),
            ("a*/b", Translation::Regexp("^a[^/]*/b$".into())),
            ("**", Translation::Suffix),
            ("**/**", Translation::Regexp("^(.*/)?.*$".into())),
            ("dir/**", Translation::Prefix),
            ("**/dir", Translation::Suffix),
            ("**/dir2/*", Translation::Regexp("^(.*/)?dir2/[^/]*$".into())),
            ("**/dir2/**", Translation::Regexp("^(.*/)?dir2/.*$".into())),
            ("**file", Translation::Suffix),
            ("**/file*txt", Translation::Regexp("^(.*/)?file[^/]*txt$".into())),
            ("**/**/*.txt", Translation::Regexp("^(.*/)?(.*/)?[^/]*\\.txt$".into())),
            ("a[b-d]e", Translation::Regexp("^a[b-d]e$".into())),
            (".*", Translation::Regexp("^\\.[^/]*$".into())),
            ("abc.def", Translation::Exact),
            ("abc?def", Translation::Regexp("^abc[^/]def$".into())),
            ("**/foo/bar", Translation::Suffix),
            ("a(b)c/def", Translation::Exact),
            ("a.|)$(}+{bc", Translation::Exact),
            ("dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", Translation::Exact),
        ];
        for (pattern, expected) in cases {
            assert_eq!(translate(&gopath::clean(pattern)), expected, "{pattern}");
        }
    }

    // TestMatchesOrParentMatchesMalformedPatternDoesNotPanicOnRepeatedCall: `[Local-Only]/`
    // passes filepath.Match, and Go's regexp then rejects `l-O`. patternmatcher fails the first
    // match (and BuildKit the build); here the pattern is refused when it is read.
    #[test]
    fn a_pattern_go_cannot_compile_is_refused() {
        expect![[r#"`[Local-Only]/` is not a valid pattern: it becomes the Go regexp `^[Local-Only]$`, which Go rejects (error parsing regexp: invalid character class range: `l-O`), so BuildKit fails with "syntax error in pattern""#]]
            .assert_eq(&matcher(&["[Local-Only]/"]).unwrap_err());
    }

    // ignorefile_test.go TestReadAll (a nil reader is no file: `read` without one).
    #[test]
    fn read_all_lines() {
        let content = "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n!\n! ";
        let patterns: Vec<String> = read_all(content).unwrap().into_iter().map(|(line, pattern)| format!("{line}: {pattern}")).collect();
        expect![[r#"
            1: test1
            2: test2
            3: a/file/here
            5: lastfile
            7: !inverted/abs/path
            8: !
            9: !"#]]
        .assert_eq(&patterns.join("\n"));
        // The lone `!`s that ReadAll passes on are what New refuses.
        expect!["line 8: `!` is not a valid pattern: illegal exclusion pattern: \"!\" (a `!` needs a pattern after it)"]
            .assert_eq(&Dockerignore::parse(content).unwrap_err().to_string());
    }

    // ReadAll: the BOM goes from the first line only, `#` must be in the first column, CRLF
    // endings and surrounding blanks go, and filepath.Clean then drops `.`, `..` and `//`.
    #[test]
    fn read_all_cleaning() {
        let content = "\u{feff}first\r\n\u{feff}second\n  # not a comment\n\t./a/./b//c/ \n!  /x/../y\n../up\nfoo/../../bar\n/\n//\n.\n!/\nfoo /\n/ /x/..\n";
        let patterns: Vec<String> = read_all(content).unwrap().into_iter().map(|(line, pattern)| format!("{line}: {pattern:?}")).collect();
        expect![[r##"
            1: "first"
            2: "\u{feff}second"
            3: "# not a comment"
            4: "a/b/c"
            5: "!y"
            6: "../up"
            7: "../bar"
            8: "/"
            9: "/"
            10: "."
            11: "!/"
            12: "foo "
            13: " ""##]]
        .assert_eq(&patterns.join("\n"));
    }

    // What those lines then do: New trims and cleans again, so `foo /` is `foo` and `/ /x/..`
    // nothing; `/`, `.` and `..` patterns match no path of the walk; `!/` cleans to a lone `!`.
    #[test]
    fn cleaned_patterns_at_work() {
        check(
            "\u{feff}first\n\u{feff}second\n  # not a comment\n./a/./b//c/\n../up\n/\n.\nfoo /\n/ /x/..\n",
            &["first", "second", "# not a comment", "a/b/c/d", "up", "../up", "x", "foo/bar"],
            expect![[r##"
                first: out
                second: in
                # not a comment: out
                a/b/c/d: out
                up: in
                ../up: out
                x: in
                foo/bar: out"##]],
        );
        // Only the pattern's first byte order mark is passed over, when it is translated.
        let ignore = Dockerignore::parse("x\n\u{feff}second\n\u{feff}*.txt\n").unwrap();
        assert!(ignore.excludes("\u{feff}second") && !ignore.excludes("second") && ignore.excludes("a.txt"));
        expect!["line 1: `!/` is not a valid pattern: illegal exclusion pattern: \"!\" (a `!` needs a pattern after it)"]
            .assert_eq(&Dockerignore::parse("!/").unwrap_err().to_string());
    }

    // bufio.Scanner's limit: a line of 65536 bytes fails the whole file.
    #[test]
    fn a_line_too_long_for_buildkit() {
        let longest = "a".repeat(MAX_LINE - 1);
        assert!(Dockerignore::parse(&format!("x\n{longest}\n")).unwrap().excludes(&longest));
        expect!["line 2: the line is 65536 bytes long, and BuildKit reads lines of at most 65535 (bufio.Scanner: token too long)"]
            .assert_eq(&Dockerignore::parse(&format!("x\n{longest}a")).unwrap_err().to_string());
    }

    // Classes, escapes and anchors are Go regexp syntax, not filepath.Match syntax: `[!...]` is
    // no negation, `\d` is a digit, `\b` a word boundary, a raw `^` the start of the text, and
    // `**` (`.*`) does not cross a newline while `*` (`[^/]*`) does.
    #[test]
    fn go_regexp_semantics() {
        check(
            "[!a]x*\nlog\\d\n[[:upper:]]*.md\nend\\b*\na^b*\nc^d\nn/**/z\nm*\n",
            &["!x", "ax", "bx", "log7", "logd", "README.md", "readme.md", "end", "endx", "a^bc", "c^d", "n/q/z", "n/q\nr/z", "m\nm"],
            expect![[r#"
                !x: out
                ax: out
                bx: in
                log7: out
                logd: in
                README.md: out
                readme.md: in
                end: out
                endx: in
                a^bc: in
                c^d: out
                n/q/z: out
                n/q
                r/z: in
                m
                m: out"#]],
        );
    }

    // The translation puts `*` and `?` inside a class the pattern opened: `[a*]` is
    // `[a[^/]*]`, a class of `a[^/` repeated, then `]`; `\Q` quotes the rest, `$` included.
    #[test]
    fn translations_inside_classes_and_quotes() {
        check(
            "[a*]\n\\Q*\n",
            &["a", "a]", "]", "//]", "[^/]*$", "[^/]*$x", "x"],
            expect![[r#"
                a: in
                a]: out
                ]: out
                //]: out
                [^/]*$: out
                [^/]*$x: out
                x: in"#]],
        );
    }

    #[test]
    fn go_regexp_errors() {
        let errors: Vec<String> = ["[z-a]", "[[:alpha:]", "[[:alphabet:]]", "a\\8", "\\pL*", "\\pQ"]
            .into_iter()
            .map(|pattern| Dockerignore::parse(pattern).unwrap_err().to_string())
            .collect();
        expect![[r#"
            line 1: `[z-a]` is not a valid pattern: it becomes the Go regexp `^[z-a]$`, which Go rejects (error parsing regexp: invalid character class range: `z-a`), so BuildKit fails with "syntax error in pattern"
            line 1: `[[:alpha:]` is not a valid pattern: it becomes the Go regexp `^[[:alpha:]$`, which Go rejects (error parsing regexp: missing closing ]: `[[:alpha:]$`), so BuildKit fails with "syntax error in pattern"
            line 1: `[[:alphabet:]]` is not a valid pattern: it becomes the Go regexp `^[[:alphabet:]]$`, which Go rejects (error parsing regexp: invalid character class range: `[:alphabet:]`), so BuildKit fails with "syntax error in pattern"
            line 1: `a\8` is not a valid pattern: it becomes the Go regexp `^a\8$`, which Go rejects (error parsing regexp: invalid escape sequence: `\8`), so BuildKit fails with "syntax error in pattern"
            line 1: `\pL*` is not a valid pattern: it becomes the Go regexp `^\pL[^/]*$`, whose Unicode class `\pL` this builder does not reproduce: list the characters in a `[...]` instead
            line 1: `\pQ` is not a valid pattern: it becomes the Go regexp `^\pQ$`, which Go rejects (error parsing regexp: invalid character class range: `\pQ`), so BuildKit fails with "syntax error in pattern""#]]
        .assert_eq(&errors.join("\n"));
    }

    // The workspace's own file. filter.go, Walk: `target` matches, and since the exception
    // `target/stage` has no wildcard (onlyPrefixExcludeExceptions) and `target/stage/` starts
    // with `target/`, `goto passedExcludeFilter` walks it with skip = true; `target/release`
    // has no such exception under it and gets `return filepath.SkipDir`.
    #[test]
    fn workspace_ignore_file() {
        let ignore = Dockerignore::parse("target\n!target/stage\n.git\n").unwrap();
        let dirs: Vec<String> = ["target", "target/release", "target/stage", ".git", "crates"]
            .iter()
            .map(|dir| {
                format!("{dir}: excluded {}, walked {}", ignore.excludes(dir), !ignore.excludes(dir) || ignore.may_include_under(dir))
            })
            .collect();
        expect![[r#"
            target: excluded true, walked true
            target/release: excluded true, walked false
            target/stage: excluded false, walked true
            .git: excluded true, walked false
            crates: excluded false, walked true"#]]
        .assert_eq(&dirs.join("\n"));
        check_walk(
            "target\n!target/stage\n.git\n",
            &[
                ".git/",
                ".git/config",
                "crates/",
                "crates/api/",
                "crates/api/main.rs",
                "target/",
                "target/release/",
                "target/release/api",
                "target/stage/",
                "target/stage/amd64/",
                "target/stage/amd64/api",
            ],
            expect![[r#"
                crates/
                crates/api/
                crates/api/main.rs
                target/
                target/stage/
                target/stage/amd64/
                target/stage/amd64/api"#]],
        );
    }

    // filter_test.go TestWalkerExclude: `foo` is excluded yet walked for `!foo/bar2`, and sent
    // (lazily, before `foo/bar2`) only because `foo/bar2` is.
    #[test]
    fn excluded_directory_sent_for_what_it_holds() {
        check_walk(
            "foo*\n!foo/bar2\n",
            &["bar", "foo/", "foo/bar2", "foo/other", "foo2"],
            expect![[r#"
                bar
                foo/
                foo/bar2"#]],
        );
    }

    // An excluded directory walked for an exception that re-includes nothing is not sent at all:
    // `calledFn` stays false, and nothing under it calls fn for its parents.
    #[test]
    fn excluded_directory_with_nothing_included_is_absent() {
        check_walk("build\n!build/out/app\n", &["build/", "build/out/", "build/out/other", "build/tmp/", "build/tmp/x"], expect![""]);
    }

    // A directory that is not excluded is sent when it is reached (`skip` is false), even when
    // everything in it is excluded: COPY of its parent creates it, empty.
    #[test]
    fn included_directory_with_everything_excluded_is_present() {
        check_walk(
            "src/*\n",
            &["src/", "src/a.rs", "src/mod/", "src/mod/b.rs", "tests/"],
            expect![[r#"
                src/
                tests/"#]],
        );
    }

    // filter_test.go TestFilteredOpenInvert: exceptions and exclusions nested twice.
    #[test]
    fn nested_exceptions() {
        check_walk(
            "foo\n!foo/bar\nfoo/bar/baz\n!foo/bar/baz/x\n",
            &["foo/", "foo/bar/", "foo/bar/baz/", "foo/bar/baz/x", "foo/bar/baz/y", "foo/bar/c", "foo/d"],
            expect![[r#"
                foo/
                foo/bar/
                foo/bar/baz/
                foo/bar/baz/x
                foo/bar/c"#]],
        );
    }

    // filter_test.go TestWalkerPermissionDenied: `**/bar` with `!foo/bar/baz` walks into
    // `foo/bar`, with `!foo/bar` does not exclude it, and without exceptions skips it.
    #[test]
    fn walked_for_an_exception_below() {
        let walked = |patterns: &str| {
            let ignore = Dockerignore::parse(patterns).unwrap();
            format!("excluded {}, walked {}", ignore.excludes("foo/bar"), ignore.may_include_under("foo/bar"))
        };
        expect!["excluded true, walked true"].assert_eq(&walked("**/bar\n!foo/bar/baz"));
        expect!["excluded false, walked true"].assert_eq(&walked("**/bar\n!foo/bar"));
        expect!["excluded true, walked false"].assert_eq(&walked("**/bar"));
    }

    // An exception with a wildcard (fsutil's patternChars, `*[]?^\`) clears
    // onlyPrefixExcludeExceptions: every excluded directory is walked, and only matching decides.
    #[test]
    fn a_wildcard_exception_walks_every_excluded_directory() {
        let ignore = Dockerignore::parse("vendor\nnode_modules\n!**/*.go\n").unwrap();
        assert!(ignore.may_include_under("node_modules/left-pad"));
        check_walk(
            "vendor\nnode_modules\n!**/*.go\n",
            &["node_modules/", "node_modules/x.js", "vendor/", "vendor/a/", "vendor/a/b.go", "vendor/a/c.txt"],
            expect![[r#"
                vendor/
                vendor/a/
                vendor/a/b.go"#]],
        );
    }

    // fsutil's prefix test sees only what is left once `/**` then `/*` are dropped, so `docs/*/**`
    // counts as the plain path `docs`: the walk enters `docs` but skips `docs/a`, and
    // `docs/a/b`, which the exception matches, never reaches the build.
    #[test]
    fn fsutil_skips_what_a_trailing_glob_exception_matches() {
        let ignore = Dockerignore::parse("docs\n!docs/*/**\n").unwrap();
        assert!(!matches_using_parent_results(&ignore, "docs/a/b"));
        check(
            "docs\n!docs/*/**\n",
            &["docs", "docs/a", "docs/a/b"],
            expect![[r#"
                docs: out
                docs/a: out
                docs/a/b: out"#]],
        );
    }

    // The last matching pattern decides, and an exception is tried only while something is
    // excluded: one before the pattern it excepts from is dead.
    #[test]
    fn order_decides() {
        check(
            "!keep\n*\n*.md\n!README.md\n",
            &["keep", "notes.md", "README.md", "docs/README.md"],
            expect![[r#"
                keep: out
                notes.md: out
                README.md: in
                docs/README.md: out"#]],
        );
    }

    /// A directory under the system's temporary directory, removed when dropped.
    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir().join(format!("dockerignore-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(dir.join("app")).unwrap();
            Scratch(dir)
        }

        fn write(&self, path: &str, text: &str) {
            fs::write(self.0.join(path), text).unwrap();
        }

        /// What `read` picks for `dockerfile`: the patterns' verdict on `probe`.
        fn excludes(&self, dockerfile: &str, probe: &str) -> bool {
            Dockerignore::read(&self.0, &self.0.join(dockerfile)).unwrap().excludes(probe)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    // dockerui's ReadEntrypoint reads `<filename>.dockerignore` from the Dockerfile's directory
    // and, when it is there, dockerIgnorePatterns never loads the context's `.dockerignore`.
    #[test]
    fn the_dockerfile_ignore_file_replaces_the_context_one() {
        let scratch = Scratch::new("choice");
        assert!(!scratch.excludes("app/Dockerfile", "secret"));
        scratch.write(".dockerignore", "secret\n");
        assert!(scratch.excludes("app/Dockerfile", "secret"));
        scratch.write("app/Dockerfile.dockerignore", "other\n");
        assert!(!scratch.excludes("app/Dockerfile", "secret"));
        assert!(scratch.excludes("app/Dockerfile", "other"));
        // The name is the Dockerfile's, whatever it is.
        assert!(scratch.excludes("app/api.Dockerfile", "secret"));
        scratch.write("app/api.Dockerfile.dockerignore", "");
        // Empty, it still wins (BuildKit's own Dockerfile frontend reads it as zero bytes, not nil).
        assert!(!scratch.excludes("app/api.Dockerfile", "secret"));
    }

    // dockerIgnorePatterns ignores the failure to read a `.dockerignore` that is no file.
    #[test]
    fn an_ignore_file_that_is_a_directory_is_passed_over() {
        let scratch = Scratch::new("directory");
        fs::create_dir(scratch.0.join(".dockerignore")).unwrap();
        assert!(!scratch.excludes("app/Dockerfile", "secret"));
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let scratch = Scratch::new("errors");
        scratch.write(".dockerignore", "# secrets\n\nfoo[\n");
        let err = Dockerignore::read(&scratch.0, &scratch.0.join("app/Dockerfile")).unwrap_err().to_string();
        let err = err.replace(&scratch.0.display().to_string(), "<context>");
        expect![[r#"<context>/.dockerignore: line 3: `foo[` is not a valid pattern: syntax error in pattern (Go's filepath.Match rejects it: an unclosed or empty `[...]`, a range without an end, or a trailing `\`)"#]]
            .assert_eq(&err);
    }

    // filepath.Clean's own cases (path/filepath's cleantests, Unix).
    #[test]
    fn clean() {
        let cases = [
            ("abc", "abc"),
            ("abc/def", "abc/def"),
            ("a/b/c", "a/b/c"),
            (".", "."),
            ("..", ".."),
            ("../..", "../.."),
            ("../../abc", "../../abc"),
            ("/abc", "/abc"),
            ("/", "/"),
            ("", "."),
            ("abc/", "abc"),
            ("abc/def/", "abc/def"),
            ("a/b/c/", "a/b/c"),
            ("./", "."),
            ("../", ".."),
            ("../../", "../.."),
            ("/abc/", "/abc"),
            ("abc//def//ghi", "abc/def/ghi"),
            ("//abc", "/abc"),
            ("///abc", "/abc"),
            ("//abc//", "/abc"),
            ("abc//", "abc"),
            ("abc/./def", "abc/def"),
            ("/./abc/def", "/abc/def"),
            ("abc/.", "abc"),
            ("abc/def/ghi/../jkl", "abc/def/jkl"),
            ("abc/def/../ghi/../jkl", "abc/jkl"),
            ("abc/def/..", "abc"),
            ("abc/def/../..", "."),
            ("/abc/def/../..", "/"),
            ("abc/def/../../..", ".."),
            ("/abc/def/../../..", "/"),
            ("abc/def/../../../ghi/jkl/../../../mno", "../../mno"),
            ("/../abc", "/abc"),
            ("abc/./../def", "def"),
            ("abc//./../def", "def"),
            ("abc/../../././../def", "../../def"),
        ];
        let wrong: Vec<String> = cases
            .iter()
            .filter(|(path, cleaned)| gopath::clean(path) != *cleaned)
            .map(|(path, _)| format!("{path} -> {}", gopath::clean(path)))
            .collect();
        assert!(wrong.is_empty(), "{wrong:?}");
    }
}
