//! A registry with the OCI 1.1 referrers API (as ECR, zot or Harbor have it), made of a real
//! distribution 2.8 registry, which stores everything, and a proxy in front of it that keeps what
//! 2.8 lacks: the list of manifests pushed with a `subject`, served at
//! `GET /v2/<name>/referrers/<digest>`, answered with the `OCI-Subject` header on their push and
//! forgotten when they are deleted. One request per connection (`Connection: close`).

use std::collections::BTreeMap;
use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use sha2::Digest as _;

use crate::support::hostile::{read_head, relay};

/// The descriptors of the manifests whose subject is a digest, per repository and subject.
type Listed = BTreeMap<(String, String), Vec<serde_json::Value>>;

pub struct ReferrersApi {
    pub host: String,
    listed: Arc<Mutex<Listed>>,
    /// How many referrers lists it answered.
    answered: Arc<Mutex<usize>>,
}

impl ReferrersApi {
    pub fn start(upstream: &str) -> ReferrersApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let (listed, answered) = (Arc::new(Mutex::new(Listed::new())), Arc::new(Mutex::new(0)));
        let (upstream, thread_listed, thread_answered) = (upstream.to_string(), listed.clone(), answered.clone());
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (upstream, listed, answered) = (upstream.clone(), thread_listed.clone(), thread_answered.clone());
                thread::spawn(move || {
                    let _ = serve(client, &upstream, &listed, &answered);
                });
            }
        });
        ReferrersApi { host, listed, answered }
    }

    /// The digests of the artifacts the API lists for `subject` in `repository`, sorted (the
    /// API's order is the order of their pushes).
    pub fn referrers(&self, repository: &str, subject: &str) -> Vec<String> {
        let listed = self.listed.lock().unwrap();
        let descriptors = listed.get(&(repository.to_string(), subject.to_string()));
        let mut digests: Vec<String> =
            descriptors.into_iter().flatten().map(|descriptor| descriptor["digest"].as_str().unwrap().to_string()).collect();
        digests.sort();
        digests
    }

    pub fn lists_answered(&self) -> usize {
        *self.answered.lock().unwrap()
    }
}

fn serve(client: TcpStream, upstream: &str, listed: &Mutex<Listed>, answered: &Mutex<usize>) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let (request_line, headers) = read_head(&mut reader)?;
    let header = |wanted: &str| headers.iter().find(|(name, _)| name.eq_ignore_ascii_case(wanted)).map(|(_, value)| value.clone());
    let content_length: u64 = header("content-length").and_then(|value| value.parse().ok()).unwrap_or(0);
    let mut body = Vec::new();
    (&mut reader).take(content_length).read_to_end(&mut body)?;
    let mut client = client;
    let mut parts = request_line.split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("").split('?').next().unwrap_or(""));
    let route = path.strip_prefix("/v2/").and_then(|rest| {
        ["/referrers/", "/manifests/"]
            .into_iter()
            .find_map(|kind| rest.rsplit_once(kind).map(|(repository, reference)| (kind, repository.to_string(), reference.to_string())))
    });

    if let (Some(("/referrers/", repository, subject)), "GET") = (&route, method) {
        let manifests = listed.lock().unwrap().get(&(repository.clone(), subject.clone())).cloned().unwrap_or_default();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        });
        let bytes = serde_json::to_vec(&index).unwrap();
        *answered.lock().unwrap() += 1;
        write!(
            client,
            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.index.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            bytes.len()
        )?;
        return client.write_all(&bytes);
    }

    let mut head = format!("{request_line}\r\n");
    for (name, value) in &headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut server = TcpStream::connect(upstream)?;
    server.write_all(head.as_bytes())?;
    server.write_all(&body)?;
    let mut server_reader = BufReader::new(server);
    let (status_line, mut response_headers) = read_head(&mut server_reader)?;
    let succeeded = status_line.split(' ').nth(1).is_some_and(|status| status.starts_with('2'));

    match (&route, method) {
        (Some(("/manifests/", repository, _)), "PUT") if succeeded => {
            let manifest: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            if let Some(subject) = manifest["subject"]["digest"].as_str() {
                let digest = format!("sha256:{:x}", sha2::Sha256::digest(&body));
                let artifact_type = manifest.get("artifactType").unwrap_or(&manifest["config"]["mediaType"]).clone();
                let mut descriptor = serde_json::json!({
                    "mediaType": header("content-type").unwrap_or_default(),
                    "digest": digest,
                    "size": body.len(),
                    "artifactType": artifact_type,
                });
                if let Some(annotations) = manifest.get("annotations") {
                    descriptor["annotations"] = annotations.clone();
                }
                let mut listed = listed.lock().unwrap();
                let descriptors = listed.entry((repository.clone(), subject.to_string())).or_default();
                if !descriptors.iter().any(|known| known["digest"] == descriptor["digest"]) {
                    descriptors.push(descriptor);
                }
                response_headers.push(("OCI-Subject".to_string(), subject.to_string()));
            }
        }
        (Some(("/manifests/", repository, reference)), "DELETE") if succeeded => {
            for ((listed_in, _), descriptors) in listed.lock().unwrap().iter_mut() {
                if listed_in == repository {
                    descriptors.retain(|descriptor| descriptor["digest"] != reference.as_str());
                }
            }
        }
        _ => {}
    }

    relay(&status_line, &response_headers, server_reader, client)
}
