//! The proxy against an echo server: each fault does what its name says.

use callers_faultproxy::FaultProxy;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout};

async fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

async fn round_trip(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(msg).await?;
    let mut buf = vec![0u8; msg.len()];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

const SHORT: Duration = Duration::from_millis(300);

#[tokio::test]
async fn it_forwards_both_ways() {
    let proxy = FaultProxy::start(echo_server().await).await.unwrap();
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut s, b"hello").await.unwrap(), b"hello");
    assert_eq!(proxy.accepted(), 1);
}

#[tokio::test]
async fn latency_delays_each_direction() {
    let proxy = FaultProxy::start(echo_server().await).await.unwrap();
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    proxy.set_latency(Duration::from_millis(100));
    let start = Instant::now();
    round_trip(&mut s, b"slow").await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );
    proxy.set_latency(Duration::ZERO);
}

#[tokio::test]
async fn reset_all_resets_open_connections_only() {
    let proxy = FaultProxy::start(echo_server().await).await.unwrap();
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    round_trip(&mut s, b"a").await.unwrap();
    proxy.reset_all();
    let mut buf = [0u8; 1];
    let r = timeout(SHORT * 3, s.read(&mut buf)).await.expect("no hang");
    match r {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset),
        Ok(n) => panic!("read {n} bytes from a reset connection"),
    }
    assert_eq!(proxy.resets(), 1);
    let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut fresh, b"b").await.unwrap(), b"b");
}

#[tokio::test]
async fn a_black_hole_keeps_connections_but_forwards_nothing() {
    let proxy = FaultProxy::start(echo_server().await).await.unwrap();
    let mut old = TcpStream::connect(proxy.addr()).await.unwrap();
    round_trip(&mut old, b"a").await.unwrap();
    proxy.set_black_hole(true);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(timeout(SHORT, round_trip(&mut old, b"b")).await.is_err());
    let mut during = TcpStream::connect(proxy.addr()).await.unwrap();
    assert!(timeout(SHORT, round_trip(&mut during, b"c")).await.is_err());
    proxy.set_black_hole(false);
    // Caught in the hole: still dead, still open.
    assert!(timeout(SHORT, round_trip(&mut old, b"d")).await.is_err());
    assert!(timeout(SHORT, round_trip(&mut during, b"e")).await.is_err());
    let mut after = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_eq!(round_trip(&mut after, b"f").await.unwrap(), b"f");
    assert_eq!(proxy.live(), 3);
}

#[tokio::test]
async fn a_pause_loses_nothing() {
    let proxy = FaultProxy::start(echo_server().await).await.unwrap();
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    round_trip(&mut s, b"a").await.unwrap();
    proxy.pause();
    tokio::time::sleep(Duration::from_millis(20)).await;
    s.write_all(b"held").await.unwrap();
    let mut buf = [0u8; 4];
    assert!(timeout(SHORT, s.read_exact(&mut buf)).await.is_err());
    proxy.resume();
    timeout(SHORT * 3, s.read_exact(&mut buf))
        .await
        .expect("delivered after resume")
        .unwrap();
    assert_eq!(&buf, b"held");
}

#[tokio::test]
async fn refusing_closes_the_port_until_told_otherwise() {
    let proxy = FaultProxy::start(echo_server().await).await.unwrap();
    let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
    round_trip(&mut open, b"y").await.unwrap();
    proxy.go_down();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let e = TcpStream::connect(proxy.addr()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
    let mut buf = [0u8; 1];
    let r = timeout(SHORT * 3, open.read(&mut buf))
        .await
        .expect("no hang");
    assert!(r.is_err(), "open ones were reset");
    proxy.set_refusing(false);
    let mut again = None;
    for _ in 0..50 {
        if let Ok(s) = TcpStream::connect(proxy.addr()).await {
            again = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut again = again.expect("listening again");
    assert_eq!(round_trip(&mut again, b"z").await.unwrap(), b"z");
}
