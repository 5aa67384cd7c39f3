//! What a shell-form RUN line runs, read as `/bin/sh` runs it, as far as that is known before
//! it runs: the line is cut into simple commands at its unquoted `;`, `;;`, `&&` and newlines
//! first, and each command's words are expanded when the shell reaches it, with the variables
//! the commands before it set (`T=x`, `export T=x`). `if` blocks whose tests, and `case` blocks
//! whose word and patterns, are known (build arguments make them) are followed to the branch
//! they take. Expanding the whole line first, as BuildKit's `ProcessWords` would, reads a `$T`
//! before the `T=x` ahead of it ran: cross-compiling Dockerfiles choose their Rust target so.

use std::collections::BTreeMap;

use super::shell::Lex;

/// The simple commands the shell-form RUN `line` runs, each its words, in order: those of the
/// branches taken when every `if` and `case` that holds more than assignments can be followed,
/// otherwise every command of the line, keywords and all. `lookup` gives the stage's variables.
/// A variable whose value is not known before the line runs (a command substitution sets it, or
/// a branch that cannot be followed) expands to its [`unknown_in`] marker. `Err` is a word
/// BuildKit's lexer refuses.
pub fn commands(lex: &Lex, line: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Vec<Vec<String>>, String> {
    let pieces = cut(line, lex.escape());
    match follow(lex, &pieces, lookup)? {
        Some(followed) => Ok(followed),
        None => {
            // Every command, as if every branch ran in turn.
            let mut shell = Shell::new(lex, lookup);
            let mut all = Vec::new();
            for piece in &pieces {
                let words = shell.expand(&piece.text)?;
                shell.assign(&words);
                all.push(words);
            }
            all.retain(|words| !words.is_empty());
            Ok(all)
        }
    }
}

/// The variable whose unknown value a word holds, if any: `commands` expands such a variable to
/// `⟨$NAME⟩`, which no value the shell could compute holds.
pub fn unknown_in(word: &str) -> Option<&str> {
    let (_, rest) = word.split_once(UNKNOWN_OPEN)?;
    let (name, _) = rest.split_once(UNKNOWN_CLOSE)?;
    name.strip_prefix('$')
}

const UNKNOWN_OPEN: char = '\u{27e8}';
const UNKNOWN_CLOSE: char = '\u{27e9}';

fn unknown_value(name: &str) -> String {
    format!("{UNKNOWN_OPEN}${name}{UNKNOWN_CLOSE}")
}

/// Whether a shell word is a variable assignment (`KEY=value`).
pub fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(key, _)| {
        !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !key.starts_with(|c: char| c.is_ascii_digit())
    })
}

/// A simple command as written, whether `&&` comes before it, and whether `;;` ends it (the
/// end of a `case` clause).
#[derive(Debug, PartialEq)]
struct Piece {
    text: String,
    follows_and: bool,
    ends_clause: bool,
}

/// Cuts `line` at its unquoted `;`, `;;`, `&&` and newlines outside `$(...)`, `${...}` and
/// backquotes. `||` and pipes stay inside a command: the xtask reads such a command as one. The
/// blanks of a command substitution outside double quotes are escaped, so that expanding the
/// command keeps the substitution one word (`T=$(uname -m)-linux`), as the shell does.
fn cut(line: &str, escape: char) -> Vec<Piece> {
    // What each open `$(`, `${`, `(` or backquote is closed by.
    let mut open: Vec<char> = Vec::new();
    let mut pieces = Vec::new();
    let mut text = String::new();
    let (mut single, mut double) = (false, false);
    let mut chars = line.chars().peekable();
    let mut follows_and = false;
    let mut end = |text: &mut String, ends_clause: bool, and: bool| {
        pieces.push(Piece { text: text.trim().to_string(), follows_and, ends_clause });
        follows_and = and;
        text.clear();
    };
    while let Some(ch) = chars.next() {
        let substituting = open.iter().any(|closer| matches!(closer, ')' | '`'));
        match ch {
            _ if ch == escape && !single => {
                text.push(ch);
                if let Some(escaped) = chars.next() {
                    text.push(escaped);
                }
                continue;
            }
            '\'' if !double && open.is_empty() => single = !single,
            '"' if !single => double = !double,
            '`' if !single => {
                if open.last() == Some(&'`') {
                    open.pop();
                } else {
                    open.push('`');
                }
            }
            '$' if !single && matches!(chars.peek(), Some('(' | '{')) => {
                let opener = chars.next().expect("peeked");
                open.push(if opener == '(' { ')' } else { '}' });
                text.push(ch);
                text.push(opener);
                continue;
            }
            '(' | '{' if !open.is_empty() && !single => open.push(if ch == '(' { ')' } else { '}' }),
            ')' | '}' if open.last() == Some(&ch) && !single => {
                open.pop();
            }
            _ if ch.is_whitespace() && substituting && !double && !single => {
                text.push(escape);
            }
            ';' if !single && !double && open.is_empty() => {
                let ends_clause = chars.next_if_eq(&';').is_some();
                end(&mut text, ends_clause, false);
                continue;
            }
            '&' if !single && !double && open.is_empty() && chars.peek() == Some(&'&') => {
                chars.next();
                end(&mut text, false, true);
                continue;
            }
            '\n' if !single && !double && open.is_empty() => {
                end(&mut text, false, false);
                continue;
            }
            _ => {}
        }
        text.push(ch);
    }
    end(&mut text, false, false);
    pieces
}

/// The line's variables as the shell holds them when it reaches a command: the stage's, and
/// what the commands that ran set.
struct Shell<'a> {
    lex: Lex,
    lookup: &'a dyn Fn(&str) -> Option<String>,
    set: BTreeMap<String, String>,
}

impl<'a> Shell<'a> {
    fn new(lex: &Lex, lookup: &'a dyn Fn(&str) -> Option<String>) -> Shell<'a> {
        Shell { lex: lex.clone().keep_empty_quoted_words(true), lookup, set: BTreeMap::new() }
    }

    fn expand(&self, text: &str) -> Result<Vec<String>, String> {
        let env = |name: &str| self.set.get(name).cloned().or_else(|| (self.lookup)(name));
        self.lex.process_words(text, &env).map_err(|err| err.0)
    }

    /// Takes the assignments of a command that ran: all its words when it is only assignments,
    /// or `export`'s arguments. (Those leading another command are that command's alone.) A
    /// command substitution's output is not known.
    fn assign(&mut self, words: &[String]) {
        for (key, value) in assignments(words).into_iter().filter_map(|word| word.split_once('=')) {
            let known = !value.contains("$(") && !value.contains('`');
            self.set.insert(key.to_string(), if known { value.to_string() } else { unknown_value(key) });
        }
    }

    /// Takes the assignments of a command that may or may not run: their variables' values are
    /// not known from then on.
    fn forget(&mut self, words: &[String]) {
        for key in assignments(words).into_iter().filter_map(|word| word.split_once('=')).map(|(key, _)| key) {
            self.set.insert(key.to_string(), unknown_value(key));
        }
    }
}

/// The assignments a command makes in the shell: all its words when it is only assignments, or
/// `export`'s arguments; none for another command.
fn assignments(words: &[String]) -> Vec<&String> {
    match words.first().map(String::as_str) {
        Some("export") => words[1..].iter().filter(|word| is_assignment(word)).collect(),
        _ if words.iter().all(|word| is_assignment(word)) => words.iter().collect(),
        _ => Vec::new(),
    }
}

/// Whether a command runs: known to, known not to, or not known before the line runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Runs {
    Yes,
    No,
    Maybe,
}

impl Runs {
    fn of(known: Option<bool>) -> Runs {
        match known {
            Some(true) => Runs::Yes,
            Some(false) => Runs::No,
            None => Runs::Maybe,
        }
    }

    /// Both.
    fn and(self, other: Runs) -> Runs {
        match (self, other) {
            (Runs::No, _) | (_, Runs::No) => Runs::No,
            (Runs::Maybe, _) | (_, Runs::Maybe) => Runs::Maybe,
            _ => Runs::Yes,
        }
    }

    /// Either.
    fn or(self, other: Runs) -> Runs {
        match (self, other) {
            (Runs::Yes, _) | (_, Runs::Yes) => Runs::Yes,
            (Runs::Maybe, _) | (_, Runs::Maybe) => Runs::Maybe,
            _ => Runs::No,
        }
    }

    /// The next branch of a block, whose own condition is `holds`, after branches of which one
    /// ran as `taken` says.
    fn next_branch(taken: Runs, holds: Runs) -> Runs {
        match taken {
            Runs::Yes => Runs::No,
            Runs::No => holds,
            Runs::Maybe => Runs::Maybe.and(holds),
        }
    }
}

/// An `if` or `case` block being read: whether its current branch runs, and whether one of its
/// branches did.
enum Block {
    /// `condition`: while the condition is read (after `if` or `elif`, before `then`), whether
    /// it holds so far.
    If { branch: Runs, taken: Runs, condition: Option<Runs> },
    /// `subject` is the expanded word (`None`: not known); `in_clause` whether a clause's
    /// commands are being read (otherwise a pattern or `esac` comes next).
    Case { subject: Option<String>, branch: Runs, taken: Runs, in_clause: bool },
}

impl Block {
    fn runs(&self) -> Runs {
        match self {
            Block::If { branch, .. } => *branch,
            Block::Case { branch, in_clause, .. } => {
                if *in_clause {
                    *branch
                } else {
                    Runs::No
                }
            }
        }
    }

    /// Enters the next branch, whose condition is `holds`.
    fn next(&mut self, holds: Runs) {
        let (Block::If { branch, taken, .. } | Block::Case { branch, taken, .. }) = self;
        *branch = Runs::next_branch(*taken, holds);
        *taken = taken.or(holds);
    }
}

/// The commands of the branches taken; `None` when a branch that may or may not run (its test,
/// `case` word or pattern cannot be known before the line runs) holds more than assignments and
/// messages, or the blocks do not close.
fn follow(lex: &Lex, pieces: &[Piece], lookup: &dyn Fn(&str) -> Option<String>) -> Result<Option<Vec<Vec<String>>>, String> {
    let mut shell = Shell::new(lex, lookup);
    let mut blocks: Vec<Block> = Vec::new();
    let mut followed = Vec::new();
    for piece in pieces {
        let words = shell.expand(&piece.text)?;
        let mut rest = words.as_slice();
        loop {
            let runs = blocks.iter().fold(Runs::Yes, |runs, block| runs.and(block.runs()));
            if let Some(block @ Block::Case { in_clause: false, .. }) = blocks.last_mut() {
                match rest.first().map(String::as_str) {
                    None => break,
                    Some("esac") => {
                        blocks.pop();
                        rest = &rest[1..];
                    }
                    Some(_) => {
                        let Some(end) = rest.iter().position(|word| word.ends_with(')')) else { return Ok(None) };
                        let pattern = rest[..=end].concat();
                        let pattern = pattern.strip_prefix('(').unwrap_or(&pattern).trim_end_matches(')');
                        let Block::Case { subject, .. } = block else { unreachable!("matched above") };
                        let holds =
                            subject.as_deref().filter(|_| unknown_in(pattern).is_none()).and_then(|subject| case_matches(pattern, subject));
                        block.next(Runs::of(holds));
                        if let Block::Case { in_clause, .. } = block {
                            *in_clause = true;
                        }
                        rest = &rest[end + 1..];
                    }
                }
                continue;
            }
            // A condition's further commands: `if [ A ] && [ B ]; then` holds when both do.
            if let Some(Block::If { condition: Some(holds), .. }) = blocks.last_mut() {
                if rest.first().is_some_and(|word| word != "then") {
                    *holds = if piece.follows_and { holds.and(Runs::of(test(rest))) } else { Runs::Maybe };
                    break;
                }
            }
            match rest.first().map(String::as_str) {
                Some("if") => {
                    blocks.push(Block::If { branch: Runs::No, taken: Runs::No, condition: Some(Runs::of(test(&rest[1..]))) });
                    rest = &[];
                }
                Some("elif") => {
                    let Some(Block::If { branch, condition, .. }) = blocks.last_mut() else { return Ok(None) };
                    *branch = Runs::No;
                    *condition = Some(Runs::of(test(&rest[1..])));
                    rest = &[];
                }
                Some("then") => {
                    let Some(block @ Block::If { condition: Some(_), .. }) = blocks.last_mut() else { return Ok(None) };
                    let Block::If { condition, .. } = block else { unreachable!("matched above") };
                    let holds = condition.take().expect("matched above");
                    block.next(holds);
                    rest = &rest[1..];
                }
                Some("else") => {
                    let Some(block @ Block::If { condition: None, .. }) = blocks.last_mut() else { return Ok(None) };
                    block.next(Runs::Yes);
                    rest = &rest[1..];
                }
                Some("fi") => {
                    let Some(Block::If { condition: None, .. }) = blocks.pop() else { return Ok(None) };
                    rest = &rest[1..];
                }
                Some("case") => {
                    let [_, subject, in_word, after @ ..] = rest else { return Ok(None) };
                    if in_word != "in" {
                        return Ok(None);
                    }
                    let subject = unknown_in(subject).is_none().then(|| subject.clone());
                    blocks.push(Block::Case { subject, branch: Runs::No, taken: Runs::No, in_clause: false });
                    rest = after;
                }
                Some("esac") if matches!(blocks.last(), Some(Block::Case { in_clause: true, .. })) => {
                    blocks.pop();
                    rest = &rest[1..];
                }
                _ => {
                    match runs {
                        _ if rest.is_empty() => {}
                        Runs::No => {}
                        Runs::Yes => {
                            shell.assign(rest);
                            followed.push(rest.to_vec());
                        }
                        // A branch that may run may set variables and say things, nothing more.
                        Runs::Maybe if !assignments(rest).is_empty() => shell.forget(rest),
                        Runs::Maybe if matches!(rest[0].as_str(), "echo" | "printf" | "true" | ":" | "exit") => {}
                        Runs::Maybe => return Ok(None),
                    }
                    break;
                }
            }
        }
        if piece.ends_clause {
            match blocks.last_mut() {
                Some(Block::Case { in_clause, .. }) => *in_clause = false,
                _ => return Ok(None),
            }
        }
    }
    Ok(blocks.is_empty().then_some(followed))
}

/// Whether a `case` pattern (alternatives `a|b`, with `*` and `?`) matches `subject`; `None`
/// for a bracket expression, which the xtask does not evaluate.
fn case_matches(pattern: &str, subject: &str) -> Option<bool> {
    if pattern.contains('[') {
        return None;
    }
    Some(pattern.split('|').any(|alternative| glob(alternative.as_bytes(), subject.as_bytes())))
}

fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&pattern[1..], text) || (!text.is_empty() && glob(pattern, &text[1..])),
        (Some(b'?'), Some(_)) => glob(&pattern[1..], &text[1..]),
        (Some(p), Some(t)) if p == t => glob(&pattern[1..], &text[1..]),
        _ => false,
    }
}

/// The value of a `test`, `[ ... ]` or `[[ ... ]]` command of known words; `None` for what only
/// the running shell could tell.
fn test(words: &[String]) -> Option<bool> {
    if words.iter().any(|word| unknown_in(word).is_some()) {
        return None;
    }
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["test", operands @ ..] | ["[", operands @ .., "]"] | ["[[", operands @ .., "]]"] => evaluate(operands),
        _ => None,
    }
}

/// A test's operands evaluated (see `test`).
fn evaluate(operands: &[&str]) -> Option<bool> {
    let number = |word: &str| word.parse::<i64>().ok();
    let literal = |word: &str| !word.contains(['*', '?', '[']);
    Some(match operands {
        ["!", rest @ ..] => !evaluate(rest)?,
        [] => false,
        ["-n", word] => !word.is_empty(),
        ["-z", word] => word.is_empty(),
        [word] if !word.starts_with('-') => !word.is_empty(),
        [a, "=" | "==", b] if literal(b) => a == b,
        [a, "!=", b] if literal(b) => a != b,
        [a, operator, b] => {
            let (a, b) = (number(a)?, number(b)?);
            match *operator {
                "-eq" => a == b,
                "-ne" => a != b,
                "-lt" => a < b,
                "-le" => a <= b,
                "-gt" => a > b,
                "-ge" => a >= b,
                _ => return None,
            }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    /// The commands of `line`, one per line (words joined by spaces, an empty word as `''`),
    /// with the stage's variables `vars`.
    fn check(line: &str, vars: &[(&str, &str)], expected: expect_test::Expect) {
        let lookup = |name: &str| vars.iter().find(|(key, _)| *key == name).map(|(_, value)| value.to_string());
        let shown = match commands(&Lex::new('\\'), line, &lookup) {
            Ok(commands) => commands
                .iter()
                .map(|words| words.iter().map(|word| if word.is_empty() { "''" } else { word.as_str() }).collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join("\n"),
            Err(why) => format!("error: {why}"),
        };
        expected.assert_eq(&shown);
    }

    #[test]
    fn commands_are_cut_before_they_are_expanded() {
        check(
            "T=a && export U=b; cargo build --target $T --bin $U",
            &[("T", "old")],
            expect![[r#"
            T=a
            export U=b
            cargo build --target a --bin b"#]],
        );
        // A prefix assignment is its command's alone, expanded before it.
        check("T=a cargo build --target $T", &[("T", "old")], expect!["T=a cargo build --target old"]);
        check("a 'x;y' \"p && q\" ${V:-c;d} $(e; f) `g; h` || i | j", &[], expect!["a x;y p && q c;d $(e; f) `g; h` || i | j"]);
        check("make \\; x", &[], expect!["make ; x"]);
    }

    #[test]
    fn case_blocks_the_build_arguments_decide_are_followed() {
        // shadowsocks' shape: the Rust target chosen by TARGETARCH, then used.
        let shadowsocks = "case \"$TARGETARCH\" in \"386\") RUST_TARGET=\"i686-unknown-linux-musl\" MUSL=i686 ;; \"amd64\") RUST_TARGET=\"x86_64-unknown-linux-musl\" MUSL=x86_64 ;; *) echo \"unsupported\" && exit 1 ;; esac && cargo build --target \"$RUST_TARGET\" --release";
        check(
            shadowsocks,
            &[("TARGETARCH", "amd64")],
            expect![[r#"
            RUST_TARGET=x86_64-unknown-linux-musl MUSL=x86_64
            cargo build --target x86_64-unknown-linux-musl --release"#]],
        );
        check(
            shadowsocks,
            &[("TARGETARCH", "s390x")],
            expect![[r#"
            echo unsupported
            exit 1
            cargo build --target '' --release"#]],
        );
        check(
            "case $A in x86_64|amd64) T=x;; (arm*) T=y; esac; echo $T",
            &[("A", "arm64")],
            expect![[r#"
            T=y
            echo y"#]],
        );
        // A bracket pattern is not evaluated: the clause may run, and what it sets is not known.
        check("case $A in [ab]) T=x ;; esac; echo $T", &[("A", "a")], expect!["echo ⟨$T⟩"]);
    }

    #[test]
    fn if_blocks_see_what_the_line_set_before_them() {
        // astria's shape: the branch sets the target the build uses.
        let astria = "if [ \"$TARGETPLATFORM\" = \"linux/arm64\" ]; then export CC=aarch64-linux-gnu-gcc; TARGET_TRIPLE=aarch64-unknown-linux-gnu; else TARGET_TRIPLE=$(uname -m)-unknown-linux-gnu; fi; cargo build --release --target $TARGET_TRIPLE";
        check(
            astria,
            &[("TARGETPLATFORM", "linux/arm64")],
            expect![[r#"
            export CC=aarch64-linux-gnu-gcc
            TARGET_TRIPLE=aarch64-unknown-linux-gnu
            cargo build --release --target aarch64-unknown-linux-gnu"#]],
        );
        check(
            astria,
            &[("TARGETPLATFORM", "linux/amd64")],
            expect![[r#"
                TARGET_TRIPLE=$(uname -m)-unknown-linux-gnu
                cargo build --release --target ⟨$TARGET_TRIPLE⟩"#]],
        );
        check(
            "P=release; if [ \"$P\" = release ]; then cargo build -r; fi",
            &[],
            expect![[r#"
            P=release
            cargo build -r"#]],
        );
        check("if [ -z \"$F\" ]; then cargo build; else cargo build -F \"$F\"; fi", &[("F", "")], expect!["cargo build"]);
        // A condition of several tests holds when they all do.
        check(
            "if [ \"$P\" = linux/amd64 ] && [ \"$B\" != linux/amd64 ]; then T=cross; elif [ -z \"$B\" ] && true; then T=what; else T=native; fi; echo $T",
            &[("P", "linux/amd64"), ("B", "linux/amd64")],
            expect![[r#"
                T=native
                echo native"#]],
        );
        // A test only the running shell can tell: a branch that may run may set variables (not
        // known afterwards) and print; one that may run anything else leaves every command, as
        // written. (shadowsocks' choice of a C compiler.)
        check(
            "M=x86_64; C=/root/$M-gcc; if [ -x \"$C\" ]; then CC=$C; echo \"using $CC\"; else CC=gcc; fi; RUSTFLAGS=\"-C linker=$CC\" cargo build --target $M-unknown-linux-musl",
            &[],
            expect![[r#"
                M=x86_64
                C=/root/x86_64-gcc
                RUSTFLAGS=-C linker=⟨$CC⟩ cargo build --target x86_64-unknown-linux-musl"#]],
        );
        check(
            "if [ -f x ]; then cargo build; fi",
            &[],
            expect![[r#"
            if [ -f x ]
            then cargo build
            fi"#]],
        );
        check(
            "if [ 1 = 1 ]; then cargo build; fi; fi",
            &[],
            expect![[r#"
            if [ 1 = 1 ]
            then cargo build
            fi
            fi"#]],
        );
    }
}
