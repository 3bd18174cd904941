#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `vfpool serve --tls-cert --tls-key`: the API over TLS (rustls), and the errors of bad
//! certificate files.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use vfpool_daemon::server::TlsFiles;
use vfpool_daemon::{DaemonError, ServeConfig};
use vfpool_engine::{Host, HostConfig};

fn demo_host(dir: &std::path::Path) -> Host {
    Host::open(&HostConfig {
        demo: true,
        state: Some(dir.to_owned()),
        ..Default::default()
    })
    .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn the_api_answers_over_tls_with_the_given_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_pem, key_pem) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_pem, cert.cert.pem()).unwrap();
    std::fs::write(&key_pem, cert.signing_key.serialize_pem()).unwrap();

    let port = free_port();
    let cfg = ServeConfig {
        listen: Some(format!("127.0.0.1:{port}").parse().unwrap()),
        socket: Some(dir.path().join("api.sock")),
        tls: Some(TlsFiles {
            cert: cert_pem,
            key: key_pem,
        }),
        ..Default::default()
    };
    let server = tokio::spawn(vfpool_daemon::serve(demo_host(dir.path()), cfg));

    // A client that trusts only this certificate.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));

    let mut tcp = None;
    for _ in 0..100 {
        if let Ok(s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            tcp = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let tls = connector
        .connect(
            "localhost".try_into().unwrap(),
            tcp.expect("the daemon listens"),
        )
        .await
        .expect("TLS handshake");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let res = send
        .send_request(
            hyper::Request::get("/api/v1/nics/eno49")
                .header("host", "localhost")
                .body(http_body_util::Empty::<bytes_like::Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["name"], "eno49");

    // Plain HTTP on the TLS port gets no answer.
    let plain = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(plain))
        .await
        .unwrap();
    tokio::spawn(conn);
    let r = send
        .send_request(
            hyper::Request::get("/healthz")
                .header("host", "localhost")
                .body(http_body_util::Empty::<bytes_like::Bytes>::new())
                .unwrap(),
        )
        .await;
    assert!(r.is_err(), "plain HTTP answered on the TLS port");
    server.abort();
}

mod bytes_like {
    pub type Bytes = axum::body::Bytes;
}

#[tokio::test]
async fn bad_certificate_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let good_cert = dir.path().join("cert.pem");
    std::fs::write(&good_cert, cert.cert.pem()).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let other_key = dir.path().join("other-key.pem");
    std::fs::write(&other_key, other.signing_key.serialize_pem()).unwrap();

    let cases = [
        (
            junk.clone(),
            other_key.clone(),
            "junk.pem",
            "not a PEM certificate chain",
        ),
        (
            good_cert.clone(),
            junk.clone(),
            "junk.pem",
            "not a PEM private key",
        ),
        (
            good_cert.clone(),
            other_key.clone(),
            "other-key.pem",
            "does not fit",
        ),
        (
            dir.path().join("missing.pem"),
            other_key,
            "missing.pem",
            "not a PEM",
        ),
    ];
    for (cert, key, names, says) in cases {
        let e = vfpool_daemon::server::tls_config(&TlsFiles { cert, key }).unwrap_err();
        assert!(matches!(e, DaemonError::Tls { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains(names) && msg.contains(says), "{msg}");
    }
}
