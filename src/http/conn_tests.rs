//! GuardedIo with paused tokio time: each timeout fires after exactly its duration, and
//! nothing fires for a held request, a slow but progressing reader, or an active connection.

use super::*;
use std::cell::RefCell;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

thread_local! {
    static FIRED: RefCell<Vec<Expired>> = const { RefCell::new(Vec::new()) };
}

fn record(e: Expired) {
    FIRED.with(|f| f.borrow_mut().push(e));
}

fn fired() -> Vec<Expired> {
    FIRED.with(|f| f.borrow().clone())
}

const T: Timeouts = Timeouts {
    first_byte: Duration::from_secs(2),
    idle: Duration::from_secs(5),
    write: Duration::from_secs(3),
};

/// A guarded server side over a `cap`-byte pipe, its activity, and the client side.
fn pair(cap: usize) -> (GuardedIo<DuplexStream>, Arc<Activity>, DuplexStream) {
    let (server, client) = tokio::io::duplex(cap);
    let act = Activity::new();
    (GuardedIo::new(server, act.clone(), T, record), act, client)
}

async fn read_err(io: &mut GuardedIo<DuplexStream>) -> (io::Error, Duration) {
    let start = Instant::now();
    let mut b = [0u8; 64];
    loop {
        match io.read(&mut b).await {
            Ok(0) => panic!("unexpected EOF"),
            Ok(_) => continue,
            Err(e) => return (e, start.elapsed()),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn no_first_byte_times_out() {
    let (mut io, _act, _client) = pair(64);
    let (e, took) = read_err(&mut io).await;
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    assert_eq!(took, T.first_byte);
    assert_eq!(fired(), vec![Expired::FirstByte]);
}

#[tokio::test(start_paused = true)]
async fn slow_loris_header_times_out_at_idle_although_bytes_arrive() {
    let (mut io, _act, mut client) = pair(64);
    tokio::spawn(async move {
        for b in b"GET / HTTP/1.1\r\nHost: x\r\n".iter().cycle() {
            if client.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let (_, took) = read_err(&mut io).await;
    assert_eq!(took, T.idle);
    assert_eq!(fired(), vec![Expired::Header]);
}

#[tokio::test(start_paused = true)]
async fn held_request_never_times_out_then_idle_starts_when_it_ends() {
    let (mut io, act, mut client) = pair(64);
    client.write_all(b"GET /media.m3u8?_HLS_msn=9 HTTP/1.1\r\n\r\n").await.unwrap();
    let mut b = [0u8; 64];
    assert!(io.read(&mut b).await.unwrap() > 0);
    let guard = act.request();
    // Far longer than every timeout: the handler waits for data, nothing is pending.
    let r = tokio::time::timeout(Duration::from_secs(100), io.read(&mut b)).await;
    assert!(r.is_err(), "a read while a handler runs must stay pending: {r:?}");
    let body = guard.track(crate::http::body::Chunks::from("x"));
    drop(body); // response sent
    let (_, took) = read_err(&mut io).await;
    assert_eq!(took, T.idle);
    assert_eq!(fired(), vec![Expired::Idle]);
}

#[tokio::test(start_paused = true)]
async fn write_the_client_does_not_read_fails_after_write_timeout() {
    let (mut io, _act, _client) = pair(64);
    let start = Instant::now();
    let e = io.write_all(&[7u8; 1024]).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    assert_eq!(start.elapsed(), T.write);
    assert_eq!(fired(), vec![Expired::Write]);
}

#[tokio::test(start_paused = true)]
async fn slow_but_progressing_reader_is_served() {
    let (mut io, _act, mut client) = pair(16);
    let reader = tokio::spawn(async move {
        let mut got = 0;
        let mut b = [0u8; 16];
        while got < 256 {
            tokio::time::sleep(Duration::from_secs(2)).await; // < write timeout between reads
            got += client.read(&mut b).await.unwrap();
        }
        got
    });
    let start = Instant::now();
    io.write_all(&[1u8; 256]).await.unwrap();
    io.flush().await.unwrap();
    assert!(start.elapsed() > T.write * 5, "the transfer took {:?}", start.elapsed());
    assert_eq!(reader.await.unwrap(), 256);
    assert!(fired().is_empty(), "{:?}", fired());
}

#[tokio::test(start_paused = true)]
async fn response_body_without_progress_times_out_like_a_stalled_write() {
    // HTTP/2 flow control: the body is alive but nothing is written or polled.
    let (mut io, act, mut client) = pair(64);
    client.write_all(b"x").await.unwrap();
    let mut b = [0u8; 8];
    assert!(io.read(&mut b).await.unwrap() > 0);
    let _body = act.request().track(crate::http::body::Chunks::from("pending"));
    let (_, took) = read_err(&mut io).await;
    assert_eq!(took, T.write);
    assert_eq!(fired(), vec![Expired::Write]);
}

#[tokio::test(start_paused = true)]
async fn http2_control_frames_while_idle_count_as_idle() {
    let (mut io, _act, mut client) = pair(256);
    client.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if client.write_all(b"ping-frame").await.is_err() {
                return;
            }
        }
    });
    let (_, took) = read_err(&mut io).await;
    assert_eq!(took, T.idle, "frames do not keep an HTTP/2 connection without requests open");
    assert_eq!(fired(), vec![Expired::Idle]);
}

#[tokio::test(start_paused = true)]
async fn a_pending_write_not_retried_still_times_out() {
    let (mut io, _act, mut client) = pair(8);
    client.write_all(b"x").await.unwrap();
    let mut b = [0u8; 8];
    assert!(io.read(&mut b).await.unwrap() > 0);
    // Fill the pipe, then one write that stays pending and is never polled again.
    io.write_all(&[0u8; 8]).await.unwrap();
    let pending = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut io).poll_write(cx, b"more").is_pending())).await;
    assert!(pending);
    let (_, took) = read_err(&mut io).await;
    assert_eq!(took, T.write);
    assert_eq!(fired(), vec![Expired::Write]);
}
