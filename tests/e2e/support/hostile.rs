//! A registry that lies: an HTTP proxy in front of a real registry that can rewrite the headers
//! of its answers (send an upload `Location` or a tag list's `Link` to another origin), answer
//! requests itself (endless bodies, pages that loop), or stand for another origin that forwards
//! with credentials of its own, as a pre-signed blob store would. It records every connection and
//! every request, with whether the request carried an `Authorization` header. One request per
//! connection (it answers `Connection: close`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

/// What the proxy does with a request (given its request line).
pub enum Answer {
    Forward,
    /// Answers this status with this content type and up to 64 MiB of `x`, then hangs up: more
    /// than any honest answer.
    Endless(u16, &'static str),
    /// Answers this status with this content type and this body.
    Text(u16, &'static str, &'static str),
    /// Answers this status with these headers and this body.
    Reply(u16, Vec<(String, String)>, String),
    /// Answers 200 with this content type, then one byte every this many seconds, for 150 s.
    Trickle(&'static str, u64),
}

pub type OnRequest = Arc<dyn Fn(&str) -> Answer + Send + Sync>;
/// Rewrites the headers of a forwarded answer, given the request line.
pub type OnResponse = Arc<dyn Fn(&str, &mut Vec<(String, String)>) + Send + Sync>;

#[derive(Clone, Debug)]
pub struct Seen {
    pub request_line: String,
    pub authorization: bool,
}

pub struct Hostile {
    pub host: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<Mutex<usize>>,
}

impl Hostile {
    /// Forwards to `upstream`, adding `authorization` (a header value) to every forwarded request
    /// when given.
    pub fn start(upstream: &str, authorization: Option<String>, on_request: OnRequest, on_response: OnResponse) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let (upstream, thread_seen, thread_connections) = (upstream.to_string(), seen.clone(), connections.clone());
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                *thread_connections.lock().unwrap() += 1;
                let (upstream, seen, authorization, on_request, on_response) =
                    (upstream.clone(), thread_seen.clone(), authorization.clone(), on_request.clone(), on_response.clone());
                thread::spawn(move || {
                    let _ = serve(client, &upstream, &seen, authorization.as_deref(), &on_request, &on_response);
                });
            }
        });
        Hostile { host, seen, connections }
    }

    /// Forwards everything unchanged.
    pub fn forwarding(upstream: &str, authorization: Option<String>) -> Hostile {
        Hostile::start(upstream, authorization, Arc::new(|_| Answer::Forward), Arc::new(|_, _| {}))
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The requests that carried an `Authorization` header.
    pub fn authorized(&self) -> Vec<String> {
        self.seen().into_iter().filter(|seen| seen.authorization).map(|seen| seen.request_line).collect()
    }

    /// Connections accepted, HTTP or not (a TLS handshake counts too).
    pub fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }
}

fn serve(
    client: TcpStream,
    upstream: &str,
    seen: &Mutex<Vec<Seen>>,
    authorization: Option<&str>,
    on_request: &OnRequest,
    on_response: &OnResponse,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let (request_line, headers) = read_head(&mut reader)?;
    if !request_line.contains("HTTP/1.") {
        return Ok(());
    }
    let has_authorization = headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("authorization"));
    seen.lock().unwrap().push(Seen { request_line: request_line.clone(), authorization: has_authorization });
    let content_length: u64 =
        headers.iter().find(|(name, _)| name.eq_ignore_ascii_case("content-length")).and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut client = client;
    match on_request(&request_line) {
        Answer::Endless(status, content_type) => {
            std::io::copy(&mut (&mut reader).take(content_length), &mut std::io::sink())?;
            write!(client, "HTTP/1.1 {status} Hostile\r\nContent-Type: {content_type}\r\nConnection: close\r\n\r\n")?;
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..64 {
                client.write_all(&chunk)?;
            }
            return Ok(());
        }
        Answer::Text(status, content_type, body) => {
            std::io::copy(&mut (&mut reader).take(content_length), &mut std::io::sink())?;
            let length = body.len();
            write!(
                client,
                "HTTP/1.1 {status} Hostile\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n{body}"
            )?;
            return Ok(());
        }
        Answer::Trickle(content_type, seconds) => {
            std::io::copy(&mut (&mut reader).take(content_length), &mut std::io::sink())?;
            write!(client, "HTTP/1.1 200 Hostile\r\nContent-Type: {content_type}\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n")?;
            for _ in 0..150 / seconds.max(1) {
                thread::sleep(std::time::Duration::from_secs(seconds));
                client.write_all(b"[")?;
            }
            return Ok(());
        }
        Answer::Reply(status, headers, body) => {
            std::io::copy(&mut (&mut reader).take(content_length), &mut std::io::sink())?;
            let mut head = format!("HTTP/1.1 {status} Hostile\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            write!(client, "{head}\r\n{body}")?;
            return Ok(());
        }
        Answer::Forward => {}
    }
    let mut head = format!("{request_line}\r\n");
    for (name, value) in &headers {
        let replaced = name.eq_ignore_ascii_case("connection") || (authorization.is_some() && name.eq_ignore_ascii_case("authorization"));
        if !replaced {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    if let Some(authorization) = authorization {
        head.push_str(&format!("Authorization: {authorization}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut server = TcpStream::connect(upstream)?;
    server.write_all(head.as_bytes())?;
    std::io::copy(&mut (&mut reader).take(content_length), &mut server)?;
    let mut server_reader = BufReader::new(server);
    let (status_line, mut response_headers) = read_head(&mut server_reader)?;
    on_response(&request_line, &mut response_headers);
    relay(&status_line, &response_headers, server_reader, client)
}

/// Sends the answer `status_line` with `headers` (and `Connection: close`) to `client`, then the
/// rest of what `server` sends.
pub fn relay(status_line: &str, headers: &[(String, String)], mut server: impl Read, mut client: TcpStream) -> std::io::Result<()> {
    let mut response = format!("{status_line}\r\n");
    for (name, value) in headers {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str("Connection: close\r\n\r\n");
    client.write_all(response.as_bytes())?;
    std::io::copy(&mut server, &mut client)?;
    Ok(())
}

/// The first line and the headers of an HTTP message, without the `Connection` header's effect.
pub fn read_head(reader: &mut impl BufRead) -> std::io::Result<(String, Vec<(String, String)>)> {
    let mut first = String::new();
    reader.read_line(&mut first)?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.trim_end().split_once(':') {
            if !name.eq_ignore_ascii_case("connection") {
                headers.push((name.trim().to_string(), value.trim().to_string()));
            }
        }
    }
    Ok((first.trim_end().to_string(), headers))
}

/// Replaces the origin of the header `name`'s URL (an absolute or path-only URL) with
/// `http://origin`.
pub fn send_to(headers: &mut [(String, String)], name: &str, origin: &str) {
    for (header, value) in headers.iter_mut() {
        if header.eq_ignore_ascii_case(name) {
            let (prefix, url) = match value.strip_prefix('<') {
                Some(rest) => ("<", rest.to_string()),
                None => ("", value.clone()),
            };
            let path = match url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")) {
                Some(rest) => rest.find('/').map_or("/".to_string(), |slash| rest[slash..].to_string()),
                None => url,
            };
            *value = format!("{prefix}http://{origin}{path}");
        }
    }
}
