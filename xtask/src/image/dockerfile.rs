//! A Dockerfile reader for the native builder: parses the instructions a `FROM scratch`-style
//! final image needs into an `ImagePlan`, and names the file and line of anything it declines,
//! so that such Dockerfiles can go to a real engine instead.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Result};

use crate::image::oci::{ContainerConfig, Healthcheck};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    Scratch,
    /// A registry image, and the line of its FROM for error messages.
    Image {
        image: String,
        line: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyStep {
    pub line: usize,
    /// Source paths relative to the build context, after variable expansion.
    pub sources: Vec<String>,
    /// The destination in the image; a trailing `/` or several sources make it a directory.
    pub dest: String,
    pub chmod: Option<u32>,
    pub chown: Option<(u32, u32)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePlan {
    pub base: Base,
    pub copies: Vec<CopyStep>,
    /// What the Dockerfile itself sets; see `config_over` for what the image gets.
    pub config: ContainerConfig,
    /// An ENTRYPOINT without a later CMD clears the base image's CMD, as in Docker.
    pub clears_base_cmd: bool,
}

impl ImagePlan {
    /// The image's configuration: the base image's, with what the Dockerfile sets on top.
    pub fn config_over(&self, base: &ContainerConfig) -> ContainerConfig {
        let own = &self.config;
        let mut env: Vec<String> = base.env.clone();
        for entry in &own.env {
            let key = entry.split_once('=').map_or(entry.as_str(), |(key, _)| key);
            env.retain(|existing| existing.split_once('=').map_or(existing.as_str(), |(k, _)| k) != key);
            env.push(entry.clone());
        }
        let mut labels = base.labels.clone();
        labels.extend(own.labels.clone());
        let mut exposed_ports = base.exposed_ports.clone();
        exposed_ports.extend(own.exposed_ports.clone());
        ContainerConfig {
            user: own.user.clone().or_else(|| base.user.clone()),
            exposed_ports,
            env,
            entrypoint: own.entrypoint.clone().or_else(|| base.entrypoint.clone()),
            cmd: if own.cmd.is_some() || self.clears_base_cmd { own.cmd.clone() } else { base.cmd.clone() },
            working_dir: own.working_dir.clone().or_else(|| base.working_dir.clone()),
            labels,
            stop_signal: own.stop_signal.clone().or_else(|| base.stop_signal.clone()),
            volumes: base.volumes.clone().into_iter().chain(own.volumes.clone()).collect(),
            healthcheck: own.healthcheck.clone().or_else(|| base.healthcheck.clone()),
            // What the Dockerfile cannot set is inherited (`Shell`, say), except the base's
            // ONBUILD triggers, which are the base's children's and not passed further.
            other: base.other.iter().filter(|(key, _)| *key != "OnBuild").map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }
}

/// The native builder's refusal of a well-formed Dockerfile that needs a real engine (RUN,
/// several stages, ADD, ...), as opposed to a malformed one. `--builder auto` sends such apps to
/// the engine builder and says why.
#[derive(Debug)]
pub struct Declined {
    /// `file:line`.
    pub at: String,
    /// What the native builder does not do, for instance `RUN`.
    pub what: String,
}

impl std::fmt::Display for Declined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} is not assembled by the native builder, which handles FROM, ARG, ENV, LABEL, WORKDIR, USER, EXPOSE, COPY, ENTRYPOINT, CMD, HEALTHCHECK and STOPSIGNAL in a single stage; build this app with `--builder engine` (or `auto`)", self.at, self.what)
    }
}

impl std::error::Error for Declined {}

fn declined(file: &str, line: usize, what: impl Into<String>) -> anyhow::Error {
    Declined { at: format!("{file}:{line}"), what: what.into() }.into()
}

struct Instruction {
    line: usize,
    keyword: String,
    rest: String,
}

/// Joins continuation lines and drops comments and blank lines.
fn instructions(text: &str) -> Vec<Instruction> {
    let mut result = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (index, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_none()) {
            continue;
        }
        let (continues, content) = match trimmed.strip_suffix('\\') {
            Some(content) => (true, content),
            None => (false, trimmed),
        };
        let (line, mut joined) = pending.take().unwrap_or((index + 1, String::new()));
        if !joined.is_empty() && !content.is_empty() {
            joined.push(' ');
        }
        joined.push_str(content.trim());
        if continues {
            pending = Some((line, joined));
        } else if !joined.is_empty() {
            let (keyword, rest) = joined.split_once(char::is_whitespace).unwrap_or((&joined, ""));
            result.push(Instruction { line, keyword: keyword.to_ascii_uppercase(), rest: rest.trim().to_string() });
        }
    }
    if let Some((line, joined)) = pending {
        let (keyword, rest) = joined.split_once(char::is_whitespace).unwrap_or((&joined, ""));
        result.push(Instruction { line, keyword: keyword.to_ascii_uppercase(), rest: rest.trim().to_string() });
    }
    result
}

/// Whether any stage runs a command while building (`RUN`), which on another architecture than
/// the host's needs emulation.
pub fn runs_commands(text: &str) -> bool {
    instructions(text).iter().any(|ins| ins.keyword == "RUN")
}

/// The registry images the Dockerfile's stages start from: each FROM's image after expanding the
/// ARGs declared before the first FROM, leaving out `scratch` and earlier stages named with AS.
pub fn base_images(text: &str, build_args: &[(String, String)]) -> Vec<String> {
    base_images_with_lines(text, build_args).into_iter().map(|(image, _)| image).collect()
}

/// `base_images`, each with the line of its first FROM.
pub fn base_images_with_lines(text: &str, build_args: &[(String, String)]) -> Vec<(String, usize)> {
    let mut global_args: BTreeMap<String, String> = BTreeMap::new();
    let mut stages: Vec<String> = Vec::new();
    let mut images: Vec<(String, usize)> = Vec::new();
    for ins in instructions(text) {
        match ins.keyword.as_str() {
            "ARG" if stages.is_empty() && images.is_empty() => {
                let (name, default) = ins.rest.split_once('=').map_or((ins.rest.trim(), ""), |(name, value)| (name.trim(), value.trim()));
                let given = build_args.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone());
                let default = expand(default.trim_matches('"'), &global_args).unwrap_or_default();
                global_args.insert(name.to_string(), given.unwrap_or(default));
            }
            "FROM" => {
                let words: Vec<&str> = ins.rest.split_whitespace().filter(|word| !word.starts_with("--")).collect();
                let Some(image) = words.first().and_then(|word| expand(word, &global_args).ok()) else { continue };
                let is_stage = stages.iter().any(|stage| stage.eq_ignore_ascii_case(&image));
                if !image.eq_ignore_ascii_case("scratch") && !is_stage && !images.iter().any(|(known, _)| *known == image) {
                    images.push((image, ins.line));
                }
                if let [_, as_keyword, name] = words.as_slice() {
                    if as_keyword.eq_ignore_ascii_case("AS") {
                        stages.push(name.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    images
}

/// The Dockerfile with each `FROM scratch` naming `image` instead, other lines untouched.
pub fn replace_scratch(text: &str, image: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let indent = &line[..line.len() - line.trim_start().len()];
        let words: Vec<&str> = line.split_whitespace().collect();
        let is_from = words.first().is_some_and(|word| word.eq_ignore_ascii_case("FROM"));
        let image_word = words.iter().skip(1).position(|word| !word.starts_with("--")).map(|i| i + 1);
        match image_word {
            Some(i) if is_from && words[i].eq_ignore_ascii_case("scratch") => {
                let mut words = words.clone();
                words[i] = image;
                out.push_str(indent);
                out.push_str(&words.join(" "));
                if line.ends_with('\n') {
                    out.push('\n');
                }
            }
            _ => out.push_str(line),
        }
    }
    out
}

/// Reads a Dockerfile into an image plan. `build_args` are the values given for `ARG`s (the
/// platform arguments among them); as in Docker, an argument is visible only once declared.
pub fn plan(text: &str, file: &str, build_args: &[(String, String)]) -> Result<ImagePlan> {
    let mut planner = Planner {
        file,
        build_args,
        vars: BTreeMap::new(),
        global_args: BTreeMap::new(),
        base: None,
        copies: Vec::new(),
        config: ContainerConfig::default(),
        clears_base_cmd: false,
    };
    for ins in instructions(text) {
        planner.instruction(&ins)?;
    }
    let Planner { base, copies, config, clears_base_cmd, .. } = planner;
    let base = base.ok_or_else(|| anyhow!("{file}: no FROM instruction: a Dockerfile needs one, for instance FROM scratch"))?;
    Ok(ImagePlan { base, copies, config, clears_base_cmd })
}

/// The state of `plan` while it reads a Dockerfile's instructions in order.
struct Planner<'a> {
    file: &'a str,
    build_args: &'a [(String, String)],
    /// Variables in scope after FROM: ARGs declared in the stage and ENVs.
    vars: BTreeMap<String, String>,
    /// ARGs declared before FROM, visible to FROM only (and to an ARG that re-declares them).
    global_args: BTreeMap<String, String>,
    base: Option<Base>,
    copies: Vec<CopyStep>,
    config: ContainerConfig,
    clears_base_cmd: bool,
}

impl Planner<'_> {
    fn instruction(&mut self, ins: &Instruction) -> Result<()> {
        let (file, line) = (self.file, ins.line);
        if self.base.is_none() && !matches!(ins.keyword.as_str(), "FROM" | "ARG") {
            bail!("{file}:{line}: {} before FROM: a Dockerfile starts with FROM (only ARG may come before it)", ins.keyword);
        }
        match ins.keyword.as_str() {
            "ARG" => self.arg(&ins.rest, line)?,
            "FROM" => self.from(&ins.rest, line)?,
            "COPY" => {
                let mut step = copy_step(&ins.rest, &self.vars, line, file)?;
                // A relative destination is relative to the WORKDIR in force at this COPY.
                if !step.dest.starts_with('/') {
                    let workdir = self.config.working_dir.as_deref().unwrap_or("").trim_end_matches('/');
                    step.dest = format!("{workdir}/{}", step.dest);
                }
                self.copies.push(step);
            }
            other => self.metadata(other, &ins.rest, line)?,
        }
        Ok(())
    }

    fn arg(&mut self, rest: &str, line: usize) -> Result<()> {
        let file = self.file;
        let (name, default) = match rest.split_once('=') {
            Some((name, default)) => (name.trim(), Some(unquote(&expand(default.trim(), &self.vars)?, line, file)?)),
            None => (rest.trim(), None),
        };
        if name.is_empty() || name.contains(char::is_whitespace) {
            bail!("{file}:{line}: malformed ARG `{rest}`: write ARG NAME or ARG NAME=default");
        }
        let default = default.or_else(|| self.global_args.get(name).cloned());
        let value = self.build_args.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone()).or(default).unwrap_or_default();
        if self.base.is_none() {
            self.global_args.insert(name.to_string(), value);
        } else {
            self.vars.insert(name.to_string(), value);
        }
        Ok(())
    }

    fn from(&mut self, rest: &str, line: usize) -> Result<()> {
        let file = self.file;
        if self.base.is_some() {
            return Err(declined(file, line, "a second FROM (a multi-stage build)"));
        }
        let words: Vec<&str> = rest.split_whitespace().filter(|w| !w.starts_with("--platform=")).collect();
        let image = match words.as_slice() {
            [image] | [image, _, _] => expand(image, &self.global_args)?,
            _ => bail!("{file}:{line}: malformed FROM `{rest}`: write FROM IMAGE [AS NAME]"),
        };
        self.base = Some(if image == "scratch" { Base::Scratch } else { Base::Image { image, line } });
        Ok(())
    }

    /// The instructions that only set the image's configuration; any other is declined.
    fn metadata(&mut self, keyword: &str, rest: &str, line: usize) -> Result<()> {
        let (file, vars, config) = (self.file, &mut self.vars, &mut self.config);
        match keyword {
            "ENV" => {
                for (key, value) in key_values(rest, vars, line, file)? {
                    config.env.retain(|entry| !entry.starts_with(&format!("{key}=")));
                    config.env.push(format!("{key}={value}"));
                    vars.insert(key, value);
                }
            }
            "LABEL" => config.labels.extend(key_values(rest, vars, line, file)?),
            "WORKDIR" => {
                let dir = expand(rest, vars)?;
                let dir = if dir.starts_with('/') {
                    dir
                } else {
                    format!("{}/{dir}", config.working_dir.as_deref().unwrap_or("").trim_end_matches('/'))
                };
                config.working_dir = Some(dir);
            }
            "USER" => config.user = Some(expand(rest, vars)?),
            "STOPSIGNAL" => config.stop_signal = Some(expand(rest, vars)?),
            "EXPOSE" => {
                for port in expand(rest, vars)?.split_whitespace() {
                    let port = if port.contains('/') { port.to_string() } else { format!("{port}/tcp") };
                    config.exposed_ports.insert(port, serde_json::Map::new());
                }
            }
            "ENTRYPOINT" => {
                config.entrypoint = Some(command(rest, line, file)?);
                // As in Docker, a new ENTRYPOINT resets a CMD set earlier or inherited.
                config.cmd = None;
                self.clears_base_cmd = true;
            }
            "CMD" => config.cmd = Some(command(rest, line, file)?),
            "HEALTHCHECK" => config.healthcheck = Some(healthcheck(rest, line, file)?),
            other => return Err(declined(file, line, other)),
        }
        Ok(())
    }
}

fn copy_step(rest: &str, vars: &BTreeMap<String, String>, line: usize, file: &str) -> Result<CopyStep> {
    let mut chmod = None;
    let mut chown = None;
    let mut remaining = rest.trim();
    while let Some(flag) = remaining.strip_prefix("--") {
        let (flag, after) = flag.split_once(char::is_whitespace).unwrap_or((flag, ""));
        remaining = after.trim_start();
        match flag.split_once('=') {
            Some(("chmod", mode)) => {
                chmod = Some(
                    u32::from_str_radix(mode, 8).map_err(|_| anyhow!("{file}:{line}: --chmod={mode} is not an octal mode such as 755"))?,
                );
            }
            Some(("chown", owner)) => {
                // A user name needs the image's /etc/passwd, which only an engine reads.
                chown = Some(
                    parse_owner(owner)
                        .ok_or_else(|| declined(file, line, format!("COPY --chown={owner} (a name, not a numeric UID[:GID])")))?,
                )
            }
            _ => return Err(declined(file, line, format!("COPY --{flag}"))),
        }
    }
    let words: Vec<String> = if remaining.starts_with('[') {
        serde_json::from_str(remaining)
            .map_err(|_| anyhow!("{file}:{line}: malformed JSON form of COPY: write COPY [\"src\", \"dest\"]"))?
    } else {
        remaining.split_whitespace().map(str::to_string).collect()
    };
    let mut words = words.into_iter().map(|word| expand(&word, vars)).collect::<Result<Vec<_>>>()?;
    if words.len() < 2 {
        bail!("{file}:{line}: COPY needs a source and a destination: COPY SRC... DEST");
    }
    let dest = words.pop().expect("at least two words");
    Ok(CopyStep { line, sources: words, dest, chmod, chown })
}

fn parse_owner(owner: &str) -> Option<(u32, u32)> {
    match owner.split_once(':') {
        Some((uid, gid)) => Some((uid.parse().ok()?, gid.parse().ok()?)),
        None => {
            let uid = owner.parse().ok()?;
            Some((uid, uid))
        }
    }
}

/// `HEALTHCHECK [--interval=D] [--timeout=D] [--start-period=D] [--start-interval=D]
/// [--retries=N] CMD command` or `HEALTHCHECK NONE`, recorded as Docker records it.
fn healthcheck(rest: &str, line: usize, file: &str) -> Result<Healthcheck> {
    let mut check = Healthcheck::default();
    let mut remaining = rest.trim();
    while let Some(flag) = remaining.strip_prefix("--") {
        let (flag, after) = flag.split_once(char::is_whitespace).unwrap_or((flag, ""));
        remaining = after.trim_start();
        let (name, value) = flag.split_once('=').unwrap_or((flag, ""));
        let duration = || {
            duration_nanos(value)
                .ok_or_else(|| anyhow!("{file}:{line}: HEALTHCHECK --{name}={value} is not a duration such as 30s, 1m30s or 500ms"))
        };
        match name {
            "interval" => check.interval = duration()?,
            "timeout" => check.timeout = duration()?,
            "start-period" => check.start_period = duration()?,
            "start-interval" => check.start_interval = duration()?,
            "retries" => {
                check.retries = value.parse().map_err(|_| anyhow!("{file}:{line}: HEALTHCHECK --retries={value} is not a whole number"))?
            }
            _ => bail!("{file}:{line}: unknown HEALTHCHECK flag --{name}; Docker knows --interval, --timeout, --start-period, --start-interval and --retries"),
        }
    }
    let (keyword, command_text) = remaining.split_once(char::is_whitespace).unwrap_or((remaining, ""));
    check.test = match keyword.to_ascii_uppercase().as_str() {
        "NONE" if command_text.trim().is_empty() => vec!["NONE".into()],
        "CMD" if command_text.trim_start().starts_with('[') => {
            let mut test = vec!["CMD".to_string()];
            test.extend(command(command_text, line, file)?);
            test
        }
        "CMD" if !command_text.trim().is_empty() => vec!["CMD-SHELL".into(), command_text.trim().to_string()],
        _ => bail!("{file}:{line}: malformed HEALTHCHECK `{rest}`: write HEALTHCHECK [OPTIONS] CMD command, or HEALTHCHECK NONE"),
    };
    Ok(check)
}

/// A Go duration (`1m30s`, `500ms`, `2h`) in nanoseconds, as Docker parses HEALTHCHECK flags.
fn duration_nanos(text: &str) -> Option<u64> {
    const UNITS: &[(&str, u64)] =
        &[("ns", 1), ("us", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000), ("m", 60_000_000_000), ("h", 3_600_000_000_000)];
    let mut rest = text;
    let mut total: u64 = 0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let (_, scale) = UNITS.iter().find(|(unit, _)| *unit == &rest[..unit_len])?;
        total = total.checked_add(number.checked_mul(*scale)?)?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

/// ENTRYPOINT and CMD: the JSON (exec) form as is, the shell form through `/bin/sh -c`.
fn command(rest: &str, line: usize, file: &str) -> Result<Vec<String>> {
    if rest.trim_start().starts_with('[') {
        serde_json::from_str(rest)
            .map_err(|_| anyhow!("{file}:{line}: malformed JSON array `{rest}`: write [\"/bin/app\", \"arg\"] with double quotes"))
    } else {
        Ok(vec!["/bin/sh".into(), "-c".into(), rest.to_string()])
    }
}

/// `KEY=value KEY2="quoted value"`, or the legacy `KEY value` form with a single pair.
fn key_values(rest: &str, vars: &BTreeMap<String, String>, line: usize, file: &str) -> Result<Vec<(String, String)>> {
    let words = split_words(rest, line, file)?;
    if let [key, ..] = words.as_slice() {
        if !key.contains('=') {
            let value = rest.trim()[key.len()..].trim();
            return Ok(vec![(key.clone(), unquote(&expand(value, vars)?, line, file)?)]);
        }
    }
    let mut pairs = Vec::new();
    for word in words {
        let (key, value) = word.split_once('=').ok_or_else(|| anyhow!("{file}:{line}: `{word}` is not KEY=VALUE"))?;
        pairs.push((key.to_string(), unquote(&expand(value, vars)?, line, file)?));
    }
    Ok(pairs)
}

/// Splits on unquoted white space, keeping quotes in the words for `unquote`.
fn split_words(text: &str, line: usize, file: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                current.push(c);
            }
            (Some(q), c) if c == q => {
                quote = None;
                current.push(c);
            }
            (_, '\\') => {
                current.push(c);
                if let Some(next) = chars.next() {
                    current.push(next);
                }
            }
            (_, c) => current.push(c),
        }
    }
    if quote.is_some() {
        bail!("{file}:{line}: unterminated quote in `{text}`");
    }
    if !current.is_empty() {
        words.push(current);
    }
    Ok(words)
}

fn unquote(text: &str, line: usize, file: &str) -> Result<String> {
    let mut out = String::new();
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => out.push(c),
            (_, '\\') => out.extend(chars.next()),
            (_, c) => out.push(c),
        }
    }
    if quote.is_some() {
        bail!("{file}:{line}: unterminated quote in `{text}`");
    }
    Ok(out)
}

/// Expands `$NAME`, `${NAME}`, `${NAME:-default}` and `${NAME:+alternative}`; unknown names are
/// empty, as in Docker.
fn expand(text: &str, vars: &BTreeMap<String, String>) -> Result<String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}').ok_or_else(|| anyhow!("unterminated ${{ in `{text}`"))?;
            let inner = &braced[..end];
            let value = if let Some((name, default)) = inner.split_once(":-") {
                vars.get(name).filter(|v| !v.is_empty()).cloned().unwrap_or_else(|| default.to_string())
            } else if let Some((name, alternative)) = inner.split_once(":+") {
                if vars.get(name).is_some_and(|v| !v.is_empty()) {
                    alternative.to_string()
                } else {
                    String::new()
                }
            } else {
                vars.get(inner).cloned().unwrap_or_default()
            };
            out.push_str(&value);
            rest = &braced[end + 1..];
        } else {
            let len = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            if len == 0 {
                out.push('$');
            } else {
                out.push_str(vars.get(&after[..len]).map(String::as_str).unwrap_or(""));
            }
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(dockerfile: &str, expected: expect_test::Expect) {
        let args = vec![("TARGETPLATFORM".to_string(), "linux/arm64".to_string()), ("TARGETARCH".to_string(), "arm64".to_string())];
        let actual = match plan(dockerfile, "Dockerfile", &args) {
            Ok(plan) => format!("{plan:#?}"),
            Err(err) => format!("error: {err:#}"),
        };
        expected.assert_eq(&actual);
    }

    #[test]
    fn sample_app_dockerfile() {
        check(
            r#"
# comment
FROM scratch
ARG TARGETPLATFORM
COPY --chmod=755 target/stage/${TARGETPLATFORM}/api \
     /usr/local/bin/api
ENV LISTEN=0.0.0.0:8080 GREETING="hello world"
LABEL org.example.team=core
EXPOSE 8080 9090/udp
WORKDIR /srv
WORKDIR data
USER 65534:65534
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/api"]
CMD ["--verbose"]
"#,
            expect_test::expect![[r#"
                ImagePlan {
                    base: Scratch,
                    copies: [
                        CopyStep {
                            line: 5,
                            sources: [
                                "target/stage/linux/arm64/api",
                            ],
                            dest: "/usr/local/bin/api",
                            chmod: Some(
                                493,
                            ),
                            chown: None,
                        },
                    ],
                    config: ContainerConfig {
                        user: Some(
                            "65534:65534",
                        ),
                        exposed_ports: {
                            "8080/tcp": {},
                            "9090/udp": {},
                        },
                        env: [
                            "LISTEN=0.0.0.0:8080",
                            "GREETING=hello world",
                        ],
                        entrypoint: Some(
                            [
                                "/usr/local/bin/api",
                            ],
                        ),
                        cmd: Some(
                            [
                                "--verbose",
                            ],
                        ),
                        working_dir: Some(
                            "/srv/data",
                        ),
                        labels: {
                            "org.example.team": "core",
                        },
                        stop_signal: Some(
                            "SIGTERM",
                        ),
                        volumes: {},
                        healthcheck: None,
                        other: {},
                    },
                    clears_base_cmd: true,
                }"#]],
        );
    }

    #[test]
    fn undeclared_arguments_expand_to_nothing() {
        check(
            "FROM scratch\nCOPY bin/${TARGETARCH:-none}/app /app\n",
            expect_test::expect![[r#"
                ImagePlan {
                    base: Scratch,
                    copies: [
                        CopyStep {
                            line: 2,
                            sources: [
                                "bin/none/app",
                            ],
                            dest: "/app",
                            chmod: None,
                            chown: None,
                        },
                    ],
                    config: ContainerConfig {
                        user: None,
                        exposed_ports: {},
                        env: [],
                        entrypoint: None,
                        cmd: None,
                        working_dir: None,
                        labels: {},
                        stop_signal: None,
                        volumes: {},
                        healthcheck: None,
                        other: {},
                    },
                    clears_base_cmd: false,
                }"#]],
        );
    }

    #[test]
    fn declined_and_malformed() {
        check("FROM scratch\nRUN echo hi\n", expect_test::expect!["error: Dockerfile:2: RUN is not assembled by the native builder, which handles FROM, ARG, ENV, LABEL, WORKDIR, USER, EXPOSE, COPY, ENTRYPOINT, CMD, HEALTHCHECK and STOPSIGNAL in a single stage; build this app with `--builder engine` (or `auto`)"]);
        check(
            "COPY a /a\n",
            expect_test::expect!["error: Dockerfile:1: COPY before FROM: a Dockerfile starts with FROM (only ARG may come before it)"],
        );
        check(
            "# only a comment\n",
            expect_test::expect!["error: Dockerfile: no FROM instruction: a Dockerfile needs one, for instance FROM scratch"],
        );
        check(
            "FROM scratch\nCOPY onlyone\n",
            expect_test::expect!["error: Dockerfile:2: COPY needs a source and a destination: COPY SRC... DEST"],
        );
        check(
            "FROM scratch\nENTRYPOINT ['/app']\n",
            expect_test::expect![[r#"error: Dockerfile:2: malformed JSON array `['/app']`: write ["/bin/app", "arg"] with double quotes"#]],
        );
        check("FROM scratch AS a\nFROM scratch\n", expect_test::expect!["error: Dockerfile:2: a second FROM (a multi-stage build) is not assembled by the native builder, which handles FROM, ARG, ENV, LABEL, WORKDIR, USER, EXPOSE, COPY, ENTRYPOINT, CMD, HEALTHCHECK and STOPSIGNAL in a single stage; build this app with `--builder engine` (or `auto`)"]);
        check(
            "FROM scratch\nCOPY --chown=app a /a\n",
            expect_test::expect!["error: Dockerfile:2: COPY --chown=app (a name, not a numeric UID[:GID]) is not assembled by the native builder, which handles FROM, ARG, ENV, LABEL, WORKDIR, USER, EXPOSE, COPY, ENTRYPOINT, CMD, HEALTHCHECK and STOPSIGNAL in a single stage; build this app with `--builder engine` (or `auto`)"],
        );
        check("FROM scratch\nENV A=\"open\n", expect_test::expect![[r#"error: Dockerfile:2: unterminated quote in `A="open`"#]]);
    }

    #[test]
    fn base_image_and_shell_form() {
        let plan = plan("ARG BASE=127.0.0.1:5000/base:1\nFROM $BASE\nCMD echo hi\n", "Dockerfile", &[]).unwrap();
        assert_eq!(plan.base, Base::Image { image: "127.0.0.1:5000/base:1".into(), line: 2 });
        assert_eq!(plan.config.cmd, Some(vec!["/bin/sh".into(), "-c".into(), "echo hi".into()]));
    }

    #[test]
    fn configuration_inherits_from_the_base_image() {
        let base = ContainerConfig {
            env: vec!["PATH=/bin".into(), "MODE=base".into()],
            cmd: Some(vec!["/bin/sh".into()]),
            working_dir: Some("/base".into()),
            labels: [("team".to_string(), "platform".to_string())].into(),
            other: serde_json::json!({"Shell": ["/bin/bash", "-c"], "OnBuild": ["RUN make"]}).as_object().unwrap().clone(),
            ..ContainerConfig::default()
        };
        let plan = plan("FROM registry.example/base:1\nENV MODE=app\nLABEL app=api\nENTRYPOINT [\"/api\"]\n", "Dockerfile", &[]).unwrap();
        let config = plan.config_over(&base);
        assert_eq!(config.env, ["PATH=/bin", "MODE=app"]);
        assert_eq!(config.cmd, None, "ENTRYPOINT clears the inherited CMD");
        assert_eq!(config.entrypoint, Some(vec!["/api".to_string()]));
        assert_eq!(config.working_dir.as_deref(), Some("/base"));
        assert_eq!(config.labels.len(), 2);
        assert_eq!(
            serde_json::Value::Object(config.other),
            serde_json::json!({"Shell": ["/bin/bash", "-c"]}),
            "SHELL is inherited, ONBUILD is not"
        );
        let plan = plan_without_entrypoint();
        assert_eq!(plan.config_over(&base).cmd, Some(vec!["/bin/sh".to_string()]));
    }

    #[test]
    fn scratch_is_replaced_only_in_from() {
        let text =
            "ARG X\nFROM scratch AS build\nRUN echo scratch\n  from --platform=linux/arm64 SCRATCH\nFROM debian\nCOPY --from=build / /\n";
        expect_test::expect![[r#"
            ARG X
            FROM xtask/scratch:linux-arm64 AS build
            RUN echo scratch
              from --platform=linux/arm64 xtask/scratch:linux-arm64
            FROM debian
            COPY --from=build / /
        "#]]
        .assert_eq(&replace_scratch(text, "xtask/scratch:linux-arm64"));
        assert!(runs_commands(text));
        let stages =
            "ARG RUST=1.80\nARG BASE\nFROM rust:${RUST} AS build\nFROM build AS test\nFROM --platform=$BUILDPLATFORM $BASE\nFROM scratch\n";
        let args = [("BASE".to_string(), "registry.example/debian:12".to_string())];
        assert_eq!(base_images(stages, &args), ["rust:1.80", "registry.example/debian:12"]);
        assert!(!runs_commands("FROM scratch\n# RUN nothing\nCOPY a /a\n"));
    }

    #[test]
    fn healthcheck() {
        let check = |text: &str| match plan(&format!("FROM scratch\n{text}\n"), "Dockerfile", &[]) {
            Ok(plan) => serde_json::to_string(&plan.config.healthcheck).unwrap(),
            Err(err) => format!("error: {err:#}"),
        };
        expect_test::expect![[r#"{"Test":["CMD","/api","--health"],"Interval":90000000000,"Timeout":500000000,"Retries":3}"#]]
            .assert_eq(&check(r#"HEALTHCHECK --interval=1m30s --timeout=500ms --retries=3 CMD ["/api", "--health"]"#));
        expect_test::expect![[r#"{"Test":["CMD-SHELL","curl -f http://localhost/ || exit 1"]}"#]]
            .assert_eq(&check("HEALTHCHECK CMD curl -f http://localhost/ || exit 1"));
        expect_test::expect![[r#"{"Test":["NONE"]}"#]].assert_eq(&check("HEALTHCHECK NONE"));
        expect_test::expect!["error: Dockerfile:2: HEALTHCHECK --interval=soon is not a duration such as 30s, 1m30s or 500ms"]
            .assert_eq(&check("HEALTHCHECK --interval=soon CMD /api"));
        expect_test::expect![
            "error: Dockerfile:2: malformed HEALTHCHECK `/api --health`: write HEALTHCHECK [OPTIONS] CMD command, or HEALTHCHECK NONE"
        ]
        .assert_eq(&check("HEALTHCHECK /api --health"));
    }

    fn plan_without_entrypoint() -> ImagePlan {
        plan("FROM registry.example/base:1\nUSER 1000\n", "Dockerfile", &[]).unwrap()
    }
}
