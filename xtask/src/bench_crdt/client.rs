//! The crdt part's HTTP client: keep-alive HTTP/1.1 connections to the nodes (wrk does the
//! loads; this makes entities over many connections and reads the likes back on every node).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

/// One keep-alive HTTP/1.1 connection.
pub(super) struct Conn {
    addr: String,
    io: BufReader<TcpStream>,
}

impl Conn {
    async fn open(addr: &str) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            addr: addr.to_string(),
            io: BufReader::new(stream),
        })
    }

    /// Sends one request with a JSON `body` and returns (status, body).
    async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> anyhow::Result<(u16, String)> {
        let exchange = self.exchange(method, path, body);
        tokio::time::timeout(Duration::from_secs(30), exchange)
            .await
            .with_context(|| format!("{path} on {}: no reply within 30 s", self.addr))?
            .with_context(|| format!("{method} {path} on {}", self.addr))
    }

    async fn exchange(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> anyhow::Result<(u16, String)> {
        let mut out = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n",
            self.addr,
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body);
        self.io.get_mut().write_all(&out).await?;
        let mut line = String::new();
        self.io.read_line(&mut line).await?;
        let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok());
        let status = status.with_context(|| format!("not an HTTP reply: {line:?}"))?;
        let mut length = 0;
        loop {
            line.clear();
            if self.io.read_line(&mut line).await? == 0 {
                bail!("the connection closed in the reply's head");
            }
            let Some((name, value)) = line.trim_end().split_once(':') else {
                break;
            };
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse()?;
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                bail!("a chunked reply, which this client does not read");
            }
        }
        let mut reply = vec![0; length];
        self.io.read_exact(&mut reply).await?;
        Ok((status, String::from_utf8_lossy(&reply).into_owned()))
    }
}

/// POSTs `body` to `path(i)` for i in 0..n over `conns` keep-alive connections, spread over
/// `addrs` in turn; every reply must be 200.
pub(super) async fn post_each<F>(
    addrs: &[&str],
    n: u32,
    conns: u32,
    path: F,
    body: &'static [u8],
) -> anyhow::Result<()>
where
    F: Fn(u32) -> String + Send + Sync + 'static,
{
    let (next, path) = (Arc::new(AtomicU32::new(0)), Arc::new(path));
    let mut tasks = Vec::new();
    for c in 0..conns.max(1) {
        let mut conn = Conn::open(addrs[c as usize % addrs.len()]).await?;
        let (next, path) = (next.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(());
                }
                let (status, reply) = conn.send("POST", &path(i), body).await?;
                if status != 200 {
                    bail!("POST {} on {}: {status} {reply}", path(i), conn.addr);
                }
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// The likes of keys `k{i}` for i in `keys`, as the node on `conn` sees them.
async fn likes(conn: &mut Conn, keys: impl Iterator<Item = u32>) -> anyhow::Result<Vec<i64>> {
    let mut counts = Vec::new();
    for i in keys {
        let (status, body) = conn
            .send("GET", &format!("/v1/entities/likes/k{i}"), b"")
            .await?;
        let value: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        match (status, value["state"].as_i64()) {
            (200, Some(n)) => counts.push(n),
            (404, _) => counts.push(0),
            _ => bail!("reading likes k{i} on {}: {status} {body}", conn.addr),
        }
    }
    Ok(counts)
}

/// Reads `keys` on every node of `addrs` until all of them report the same counts (at most
/// `limit`); returns the counts and how long that took.
pub(super) async fn agree(
    addrs: &[&str],
    keys: impl Iterator<Item = u32> + Clone,
    limit: Duration,
) -> anyhow::Result<(Vec<i64>, Duration)> {
    let started = Instant::now();
    let mut conns = Vec::new();
    for a in addrs {
        conns.push(Conn::open(a).await?);
    }
    loop {
        let mut seen = Vec::new();
        for conn in conns.iter_mut() {
            seen.push(likes(conn, keys.clone()).await?);
        }
        if seen.windows(2).all(|w| w[0] == w[1]) {
            return Ok((seen.swap_remove(0), started.elapsed()));
        }
        if started.elapsed() > limit {
            let sums: Vec<i64> = seen.iter().map(|s| s.iter().sum()).collect();
            bail!("the nodes' likes still differ after {limit:?} (sums per node: {sums:?})");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
