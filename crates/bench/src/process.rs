//! Figures about this process read from the kernel (Linux): processor time, bytes written,
//! a thread's processor time and peak memory. Each reads and returns 0 when it cannot.

/// Processor time this process has used so far (user and system, all threads), in seconds.
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// The number after `key` in one of this process's `/proc/self` files (Linux).
fn proc_figure(file: &str, key: &str) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/self/{file}")).ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix(key))?;
    line.split_whitespace().next()?.parse().ok()
}

/// Bytes this process has written so far (Linux `wchar`: every write call, cached or not).
pub fn written_bytes() -> f64 {
    proc_figure("io", "wchar:").unwrap_or(0.0)
}

/// Processor time used so far by this process's threads named `name` (Linux), in seconds.
pub fn thread_cpu_seconds(name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == name)
        })
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter_map(|stat| {
            // Fields after the parenthesized name: state is field 3, utime 14, stime 15.
            let rest = &stat[stat.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = f.get(11)?.parse().ok()?;
            let stime: f64 = f.get(12)?.parse().ok()?;
            Some((utime + stime) / ticks)
        })
        .sum()
}

/// Peak resident memory of this process, in MiB (Linux `VmHWM`).
pub fn peak_rss_mb() -> f64 {
    proc_figure("status", "VmHWM:").map_or(0.0, |kb| kb / 1024.0)
}
