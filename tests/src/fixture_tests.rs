//! Tests of the fixtures themselves: the behaviour other integration tests rely on.

use std::io::Read;
use std::process::Command;

use crate::{DebBuilder, HttpServer};

fn get(url: &str, range: Option<&str>) -> (u16, Vec<(String, String)>, Vec<u8>) {
    // A plain blocking client keeps this independent of the code under test.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut request = reqwest::Client::new().get(url);
        if let Some(range) = range {
            request = request.header("Range", range);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        (
            status,
            headers,
            response.bytes().await.unwrap_or_default().to_vec(),
        )
    })
}

fn served_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("a")).unwrap();
    std::fs::write(dir.path().join("a/file.bin"), b"0123456789").unwrap();
    dir
}

#[test]
fn the_server_serves_files_and_counts_requests_per_path() {
    let dir = served_dir();
    let server = HttpServer::serve_dir(dir.path()).unwrap();
    let url = format!("{}/a/file.bin", server.url());
    assert_eq!(get(&url, None).2, b"0123456789");
    get(&url, None);
    assert_eq!(server.requests("/a/file.bin"), 2);
    assert_eq!(get(&format!("{}/missing", server.url()), None).0, 404);
    assert_eq!(server.total_requests(), 3);
}

#[test]
fn range_requests_get_206_with_the_requested_bytes() {
    let dir = served_dir();
    let server = HttpServer::serve_dir(dir.path()).unwrap();
    let url = format!("{}/a/file.bin", server.url());
    let (status, headers, body) = get(&url, Some("bytes=4-"));
    assert_eq!(status, 206);
    assert_eq!(body, b"456789");
    assert!(headers.contains(&("content-range".into(), "bytes 4-9/10".into())));
    assert_eq!(get(&url, Some("bytes=10-")).0, 416);
    assert_eq!(
        server.ranges_requested("/a/file.bin"),
        [Some("bytes=4-".to_string()), Some("bytes=10-".to_string())]
    );
}

#[test]
fn injected_failures_hit_only_the_next_requests() {
    let dir = served_dir();
    let server = HttpServer::serve_dir(dir.path()).unwrap();
    let url = format!("{}/a/file.bin", server.url());
    server.fail_next("/a/file.bin", 503, 1);
    assert_eq!(get(&url, None).0, 503);
    assert_eq!(get(&url, None).0, 200);
}

#[test]
fn a_cut_response_delivers_fewer_bytes_than_the_file_has() {
    let dir = served_dir();
    let server = HttpServer::serve_dir(dir.path()).unwrap();
    let address = server.url().trim_start_matches("http://").to_string();
    server.cut_next_after("/a/file.bin", 3);
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    use std::io::Write;
    stream
        .write_all(b"GET /a/file.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("content-length: 10"),
        "{head}"
    );
    // Chunked: "3\r\n012\r\n0\r\n\r\n"; only 3 of the 10 bytes arrive.
    assert!(body.contains("012"), "{body:?}");
    assert!(!body.contains("0123"), "{body:?}");
}

#[test]
fn a_built_deb_carries_its_control_fields_files_and_modes() {
    let out = tempfile::tempdir().unwrap();
    let deb = DebBuilder::new("hello", "1:2.10-3", "arm64")
        .field("Depends", "libc6 (>= 2.34)")
        .field("Essential", "yes")
        .file("/usr/bin/hello", "#!/bin/sh\necho hi\n", 0o4755)
        .symlink("/usr/bin/hi", "hello")
        .build(out.path())
        .unwrap();
    assert_eq!(deb.file_name(), "hello_2.10-3_arm64.deb");
    assert_eq!(deb.pool_path(), "pool/main/h/hello/hello_2.10-3_arm64.deb");
    let field = |name: &str| {
        let output = Command::new("dpkg-deb")
            .args(["--field"])
            .arg(&deb.path)
            .arg(name)
            .output()
            .unwrap();
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    };
    assert_eq!(field("Version"), "1:2.10-3");
    assert_eq!(field("Depends"), "libc6 (>= 2.34)");
    assert_eq!(field("Essential"), "yes");
    let listing = Command::new("dpkg-deb")
        .arg("-c")
        .arg(&deb.path)
        .output()
        .unwrap();
    let listing = String::from_utf8(listing.stdout).unwrap();
    assert!(listing.contains("-rwsr-xr-x root/root"), "{listing}");
    assert!(listing.contains("./usr/bin/hi -> hello"), "{listing}");
    assert_eq!(deb.size, std::fs::metadata(&deb.path).unwrap().len());
}
