//! A fault-injecting HTTP proxy for the tests: it stands between the xtask and a real registry
//! on loopback and, on a fixed schedule, answers 500/502/503, answers 429 with Retry-After,
//! resets the connection in the middle of a request body, or stalls before answering. Every
//! connection carries one request (the proxy answers `Connection: close`), so the schedule counts
//! requests. An optional check runs after every request, faulty or not, and records what it
//! finds wrong (for instance a tag naming an image whose blobs are missing).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    Pass,
    Status(u16),
    TooManyRequests,
    ResetMidBody,
    /// Waits this many milliseconds, then forwards the request.
    Stall(u64),
    /// Answers 200 with this body as an OCI index, whatever was asked: malformed JSON, or a
    /// document that does not match the digest requested.
    Body(&'static str),
    /// Answers this status with this JSON body (a registry's refusal, such as TAG_INVALID).
    Refuse(u16, &'static str),
}

/// Which fault request number n (from 0), with this request line, gets.
pub type Rule = Arc<dyn Fn(usize, &str) -> Fault + Send + Sync>;

/// Returns a description of each violated invariant; run after every request.
pub type Check = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

pub struct FaultProxy {
    pub host: String,
    /// `(request line, fault)` for every request seen, in order.
    pub log: Arc<Mutex<Vec<(String, Fault)>>>,
    /// What the check found after each request, with the request it followed.
    pub violations: Arc<Mutex<Vec<String>>>,
    /// Connections being served: a request whose client died may still reach the registry.
    in_flight: Arc<AtomicUsize>,
}

impl FaultProxy {
    /// Forwards to `upstream`; request number n (from 0) gets `schedule[n % schedule.len()]`.
    pub fn start(upstream: &str, schedule: Vec<Fault>) -> FaultProxy {
        FaultProxy::start_checked(upstream, schedule, Arc::new(Vec::new))
    }

    /// Like `start`, and runs `check` after every request.
    pub fn start_checked(upstream: &str, schedule: Vec<Fault>, check: Check) -> FaultProxy {
        FaultProxy::start_with_rule(upstream, Arc::new(move |n, _| schedule[n % schedule.len()]), check)
    }

    /// Forwards to `upstream`, with the fault `rule` picks for each request.
    pub fn start_with_rule(upstream: &str, schedule: Rule, check: Check) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let log = Arc::new(Mutex::new(Vec::new()));
        let violations = Arc::new(Mutex::new(Vec::new()));
        let counter = Arc::new(AtomicUsize::new(0));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let (upstream, thread_log, thread_violations, serving) = (upstream.to_string(), log.clone(), violations.clone(), in_flight.clone());
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (upstream, log, violations, counter, schedule, check, serving) = (
                    upstream.clone(),
                    thread_log.clone(),
                    thread_violations.clone(),
                    counter.clone(),
                    schedule.clone(),
                    check.clone(),
                    serving.clone(),
                );
                serving.fetch_add(1, Ordering::SeqCst);
                thread::spawn(move || {
                    let request = serve(client, &upstream, &log, &counter, &schedule).unwrap_or_default();
                    for violation in check() {
                        violations.lock().unwrap().push(format!("after {request}: {violation}"));
                    }
                    serving.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        FaultProxy { host, log, violations, in_flight }
    }

    /// Waits until no connection is being served (at most 30 s).
    pub fn wait_idle(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.in_flight.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
            thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    pub fn violations(&self) -> Vec<String> {
        self.violations.lock().unwrap().clone()
    }

    pub fn faults_injected(&self) -> usize {
        self.log.lock().unwrap().iter().filter(|(_, fault)| *fault != Fault::Pass).count()
    }
}

/// Serves one request; returns its request line.
fn serve(
    client: TcpStream,
    upstream: &str,
    log: &Mutex<Vec<(String, Fault)>>,
    counter: &AtomicUsize,
    schedule: &Rule,
) -> std::io::Result<String> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = Vec::new();
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(String::new()); // Not HTTP (for instance a TLS probe) or nothing at all.
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value.trim().parse().unwrap_or(0);
            }
            if name.eq_ignore_ascii_case("connection") {
                continue;
            }
        }
        let end = line == "\r\n";
        if end {
            head.extend_from_slice(b"Connection: close\r\n");
        }
        head.extend_from_slice(line.as_bytes());
        if end {
            break;
        }
    }
    let request_line = String::from_utf8_lossy(&head).lines().next().unwrap_or("").to_string();
    if !request_line.contains("HTTP/1.") {
        return Ok(String::new());
    }
    let fault = schedule(counter.fetch_add(1, Ordering::SeqCst), &request_line);
    log.lock().unwrap().push((request_line.clone(), fault));
    let mut client = client;
    match fault {
        Fault::ResetMidBody => {
            let mut partial = vec![0u8; content_length / 2];
            reader.read_exact(&mut partial)?;
            // Closing with unread data makes the kernel send a reset.
            client.shutdown(Shutdown::Both)?;
            return Ok(request_line);
        }
        Fault::Status(code) => {
            drain(&mut reader, content_length)?;
            let body = format!(r#"{{"errors":[{{"code":"UNAVAILABLE","message":"injected {code}"}}]}}"#);
            write!(
                client,
                "HTTP/1.1 {code} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )?;
            return Ok(request_line);
        }
        Fault::TooManyRequests => {
            drain(&mut reader, content_length)?;
            write!(client, "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
            return Ok(request_line);
        }
        Fault::Body(body) => {
            drain(&mut reader, content_length)?;
            write!(
                client,
                "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.index.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )?;
            return Ok(request_line);
        }
        Fault::Refuse(code, body) => {
            drain(&mut reader, content_length)?;
            write!(
                client,
                "HTTP/1.1 {code} Refused\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )?;
            return Ok(request_line);
        }
        Fault::Stall(millis) => thread::sleep(std::time::Duration::from_millis(millis)),
        Fault::Pass => {}
    }
    let mut server = TcpStream::connect(upstream)?;
    server.write_all(&head)?;
    let mut body = reader.take(content_length as u64);
    std::io::copy(&mut body, &mut server)?;
    std::io::copy(&mut server, &mut client)?;
    Ok(request_line)
}

fn drain(reader: &mut impl Read, len: usize) -> std::io::Result<()> {
    std::io::copy(&mut reader.take(len as u64), &mut std::io::sink())?;
    Ok(())
}
