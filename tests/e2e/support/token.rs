//! A token server for the registry's `auth: token` mode, as Docker Hub and most cloud registries
//! run one: it checks Basic credentials and hands out RS256 JWTs that grant what the scope asks,
//! signed with a key whose self-signed certificate the registry trusts.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;

use base64::Engine as _;

use crate::support::harness::{run, stderr};

pub struct TokenServer {
    pub realm: String,
    pub certificate: PathBuf,
    /// The query string of every token request.
    pub requests: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl TokenServer {
    pub fn start(user: &str, password: &str) -> TokenServer {
        let dir = tempfile::tempdir().unwrap();
        let openssl = |args: &[&str]| {
            let output = run(Command::new("openssl").args(args).current_dir(dir.path()));
            assert!(output.status.success(), "openssl {args:?}: {}", stderr(&output));
            output.stdout
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-subj",
            "/CN=token-issuer",
        ]);
        let der = openssl(&["x509", "-in", "cert.pem", "-outform", "der"]);
        let x5c = base64::engine::general_purpose::STANDARD.encode(der);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let realm = format!("http://{}/token", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")));
        let (key, log) = (dir.path().join("key.pem"), requests.clone());
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                let _ = reader.read_line(&mut request_line);
                let mut authorized = false;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        authorized |= name.eq_ignore_ascii_case("authorization") && value.trim() == expected;
                    }
                }
                let query = request_line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|target| target.split_once('?'))
                    .map(|(_, q)| q.to_string())
                    .unwrap_or_default();
                log.lock().unwrap().push(query.clone());
                let mut stream = stream;
                if !authorized {
                    let _ = write!(stream, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    continue;
                }
                let token = sign(&key, &x5c, &query);
                let body = format!(r#"{{"token":"{token}","expires_in":300}}"#);
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        TokenServer { realm, certificate: dir.path().join("cert.pem"), requests, _dir: dir }
    }

    /// The registry configuration section that delegates auth to this server.
    pub fn registry_config(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: {}\n    service: test-registry\n    issuer: test-issuer\n    rootcertbundle: {}\n",
            self.realm,
            self.certificate.display()
        )
    }
}

/// An RS256 JWT granting the actions of every `scope` parameter of the query.
fn sign(key: &Path, x5c: &str, query: &str) -> String {
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let access: Vec<serde_json::Value> = query
        .split('&')
        .filter_map(|pair| pair.strip_prefix("scope="))
        .map(|scope| scope.replace("%3A", ":").replace("%2F", "/").replace("%2C", ","))
        .filter_map(|scope| {
            let mut parts = scope.splitn(3, ':');
            let (kind, name, actions) = (parts.next()?.to_string(), parts.next()?.to_string(), parts.next()?.to_string());
            Some(serde_json::json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
        })
        .collect();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5c": [x5c]});
    let claims = serde_json::json!({
        "iss": "test-issuer", "sub": "ci", "aud": "test-registry", "exp": now + 300, "nbf": now - 10, "iat": now,
        "jti": format!("{now}-{}", access.len()), "access": access,
    });
    let signing_input = format!("{}.{}", url.encode(header.to_string()), url.encode(claims.to_string()));
    let mut child =
        Command::new("openssl").args(["dgst", "-sha256", "-sign"]).arg(key).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(signing_input.as_bytes()).unwrap();
    let signature = child.wait_with_output().unwrap().stdout;
    format!("{signing_input}.{}", url.encode(signature))
}
