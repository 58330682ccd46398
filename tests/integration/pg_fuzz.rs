//! A bounded fuzzer over the Postgres startup and authentication phase, against the real
//! `tidepool serve` process: seeded random byte sequences shaped like what a broken or
//! hostile client sends before it is logged in (SSL and GSS requests, startup packets with
//! lying lengths and odd parameters, password messages of every shape, query messages
//! before login, truncation). Afterwards the process must still log a real client in, and
//! its output must hold no panic.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::ServeProcess;

fn packet(tag: Option<u8>, body: &[u8], declared: Option<i32>) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(t) = tag {
        out.push(t);
    }
    let len = declared.unwrap_or(body.len() as i32 + 4);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn startup_body(rng: &mut StdRng) -> Vec<u8> {
    let mut b = Vec::new();
    let version: i32 = match rng.random_range(0..4) {
        0 => 196608,
        1 => 196610,
        2 => 80877103,
        _ => rng.random(),
    };
    b.extend_from_slice(&version.to_be_bytes());
    for _ in 0..rng.random_range(0..4) {
        let key = ["user", "database", "options", "application_name", "x"][rng.random_range(0..5)];
        b.extend_from_slice(key.as_bytes());
        b.push(0);
        let value = match rng.random_range(0..4) {
            0 => "admin".to_string(),
            1 => "-c statement_timeout=1".to_string(),
            2 => "\u{0}".to_string(),
            _ => "x".repeat(rng.random_range(0..300)),
        };
        b.extend_from_slice(value.as_bytes());
        if rng.random_bool(0.9) {
            b.push(0);
        }
    }
    if rng.random_bool(0.8) {
        b.push(0);
    }
    b
}

fn password_body(rng: &mut StdRng) -> Vec<u8> {
    match rng.random_range(0..5) {
        // A cleartext password.
        0 => b"admin pw\0".to_vec(),
        // A SASL initial response with a lying or negative length.
        1 => {
            let mut b = b"SCRAM-SHA-256\0".to_vec();
            let len: i32 = [-7, 0, 5, 1000, i32::MAX, i32::MIN][rng.random_range(0..6)];
            b.extend_from_slice(&len.to_be_bytes());
            b.extend_from_slice(b"n,,n=,r=abc");
            b
        }
        // A mechanism the server does not offer.
        2 => {
            let mut b = b"PLAIN\0".to_vec();
            b.extend_from_slice(&3i32.to_be_bytes());
            b.extend_from_slice(b"abc");
            b
        }
        // Random bytes.
        _ => (0..rng.random_range(0..64)).map(|_| rng.random()).collect(),
    }
}

/// One connection's worth of hostile bytes.
fn conversation(rng: &mut StdRng) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if rng.random_bool(0.3) {
        let code: i32 = if rng.random_bool(0.5) {
            80877103
        } else {
            80877104
        };
        out.push(packet(None, &code.to_be_bytes(), Some(8)));
        if rng.random_bool(0.3) {
            out.push(packet(None, &80877103i32.to_be_bytes(), Some(8)));
        }
    }
    let declared = match rng.random_range(0..6) {
        0 => Some(0),
        1 => Some(4),
        2 => Some(-1),
        3 => Some(i32::MAX),
        _ => None,
    };
    out.push(packet(None, &startup_body(rng), declared));
    for _ in 0..rng.random_range(0..4) {
        let tag = [b'p', b'p', b'p', b'Q', b'X', b'S', rng.random()][rng.random_range(0..7)];
        let declared = if rng.random_bool(0.2) {
            Some([0, 3, -5, 1 << 30][rng.random_range(0..4)])
        } else {
            None
        };
        out.push(packet(Some(tag), &password_body(rng), declared));
    }
    if rng.random_bool(0.2) {
        // Truncated: a prefix of the last message only.
        if let Some(last) = out.last_mut() {
            let keep = rng.random_range(0..=last.len());
            last.truncate(keep);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_and_authentication_survive_random_bytes() {
    let server =
        ServeProcess::start("[[users]]\nname = \"admin\"\npassword = \"admin pw\"\n").await;
    let addr = server.pg;
    let port = addr.port();

    let seed: u64 = std::env::var("TIDEPOOL_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let mut rng = StdRng::seed_from_u64(seed);
    let budget = Duration::from_secs(15);
    let started = Instant::now();
    let mut conversations = 0;
    while started.elapsed() < budget && conversations < 10_000 {
        let messages = conversation(&mut rng);
        let Ok(mut s) = tokio::net::TcpStream::connect(&addr).await else {
            continue;
        };
        for m in &messages {
            if s.write_all(m).await.is_err() {
                break;
            }
            // Read whatever comes back, briefly, so the server gets to each message.
            let mut buf = [0u8; 1024];
            let _ = tokio::time::timeout(Duration::from_millis(5), s.read(&mut buf)).await;
        }
        drop(s);
        conversations += 1;
    }
    eprintln!(
        "seed {seed}: {conversations} conversations in {:?}",
        started.elapsed()
    );

    // A real client still logs in and runs a query.
    let (client, conn) = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=admin password='admin pw' dbname=lake"),
        tokio_postgres::NoTls,
    )
    .await
    .expect("a real login after the fuzzing");
    tokio::spawn(conn);
    let row = client.query_one("SELECT 1 + 1", &[]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 2);

    server.stop_clean(&format!("seed {seed}")).await;
}
