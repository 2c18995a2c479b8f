//! A tiny IMDSv2 server standing in for EC2's instance metadata service, which exists only on
//! an EC2 instance: a session token for PUT /latest/api/token, then the values asked for with it.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// One HTTP/1.1 request (head and Content-Length body) read from `conn`.
pub fn read_request(conn: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = conn.read(&mut chunk).ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(buf);
        }
    }
}

/// A tiny IMDSv2 server: a token for PUT /latest/api/token, then the metadata asked for with
/// it. `answer_put: false` plays an instance whose hop limit swallows the token response.
pub struct Imds {
    pub url: String,
    stop: Arc<AtomicUsize>,
}

impl Imds {
    pub fn start(values: HashMap<&'static str, &'static str>, answer_put: bool) -> Imds {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicUsize::new(0));
        let halt = stop.clone();
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while halt.load(Ordering::SeqCst) == 0 {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = conn.set_nonblocking(false);
                let Some(req) = read_request(&mut conn) else { continue };
                let text = String::from_utf8_lossy(&req).into_owned();
                let line = text.lines().next().unwrap_or_default().to_owned();
                let (status, body) = if line.starts_with("PUT /latest/api/token") {
                    if !answer_put {
                        // Never answered, whatever the driver's timeout: the connection stays
                        // open until this stand-in stops.
                        held.push(conn);
                        continue;
                    }
                    ("200 OK", "test-token".to_owned())
                } else if !text.contains("X-aws-ec2-metadata-token: test-token") {
                    ("401 Unauthorized", String::new())
                } else {
                    let path = line
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or_default()
                        .trim_start_matches("/latest/meta-data/");
                    match values.get(path) {
                        Some(v) => ("200 OK", v.to_string()),
                        None => ("404 Not Found", String::new()),
                    }
                };
                let _ = conn.write_all(
                    format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
            }
        });
        Imds { url, stop }
    }
}

impl Drop for Imds {
    fn drop(&mut self) {
        self.stop.store(1, Ordering::SeqCst);
    }
}
