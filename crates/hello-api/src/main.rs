//! A small HTTP/1.1 service. `GET /` greets, `GET /healthz` answers `ok`, anything else is a 404;
//! paths are percent-decoded first. It listens on `LISTEN` (default `0.0.0.0:8080`).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};

fn main() -> std::io::Result<()> {
    let addr = common::setting("LISTEN", "0.0.0.0:8080");
    let listener = TcpListener::bind(&addr)?;
    println!("{}", common::log_line("hello-api", "listening", &[("addr", addr), ("platform", common::platform())]));
    for stream in listener.incoming() {
        // One bad client must not stop the service, so connection errors are logged and dropped.
        if let Err(err) = stream.and_then(serve) {
            eprintln!("{}", common::log_line("hello-api", "error", &[("error", err.to_string())]));
        }
    }
    Ok(())
}

fn serve(stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Drain the headers; the service needs none of them.
    let mut header = String::new();
    while reader.read_line(&mut header)? > 2 {
        header.clear();
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = respond(&percent_encoding::percent_decode_str(path).decode_utf8_lossy());
    let mut stream = stream;
    write!(stream, "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
}

fn respond(path: &str) -> (&'static str, String) {
    match path {
        "/" => ("200 OK", format!("{} from hello-api on {}\n", env!("HELLO_API_GREETING"), common::platform())),
        "/healthz" => ("200 OK", "ok\n".to_string()),
        _ => ("404 Not Found", "not found\n".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(respond("/healthz"), ("200 OK", "ok\n".to_string()));
        assert_eq!(respond("/nope").0, "404 Not Found");
        assert!(respond("/").1.starts_with("hello from hello-api on linux/"));
    }
}
