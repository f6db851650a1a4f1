//! Running wrk and reading what it measured: the command line every part shares (one thread,
//! a script that prints one `RESULT {json}` line) and the CPU time of the processes measured.

use std::{path::Path, process::Command};

use anyhow::Context;

/// wrk with one thread and `conns` connections for `secs` seconds, running `script` against
/// `addr`; the caller adds the script's environment.
pub(crate) fn wrk(addr: &str, script: &Path, conns: u32, secs: u32) -> Command {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t1",
        &format!("-c{conns}"),
        &format!("-d{secs}s"),
        "--timeout",
        "10s",
        "-s",
    ])
    .arg(script)
    .arg(crate::http::url(addr));
    cmd
}

/// Runs `wrk`, whose script prints one `RESULT {json}` line, and returns that JSON.
pub(crate) fn wrk_result(mut wrk: Command) -> anyhow::Result<serde_json::Value> {
    let out = wrk.output().context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .with_context(|| {
            format!(
                "wrk printed no result:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    Ok(serde_json::from_str(line)?)
}

/// The failed requests of a wrk result: bad status, connect, read, write and timeout errors.
pub(crate) fn errors(result: &serde_json::Value) -> u64 {
    [
        "err_status",
        "err_connect",
        "err_read",
        "err_write",
        "err_timeout",
    ]
    .iter()
    .map(|k| result[k].as_u64().unwrap_or(0))
    .sum()
}

/// CPU time process `pid` used so far, in µs (user + system, from `/proc`; 0 where
/// unavailable).
pub(crate) fn process_cpu_micros(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // After the command name (in parentheses), counting the state as field 0: utime and stime
    // are fields 11 and 12, in USER_HZ (100 per second) ticks.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    (fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0)) * 10_000
}
