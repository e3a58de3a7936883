//! Whose is a listening port? A replica is told its port before it binds it,
//! and a slow model server (a Python import can take seconds) leaves the port
//! free meanwhile: any other program may take it and answer the readiness
//! probe. sluice routes to a replica only once the kernel says the socket
//! listening on its port is held by a process of the replica's own process
//! group (each replica runs in its own group; see `processes.rs`).
//!
//! Linux only: it reads `/proc/net/tcp{,6}` for the listening sockets of the
//! port and `/proc/<pid>/fd` of the group's processes for their sockets.
//! Elsewhere the check cannot be made and every port counts as the replica's.

/// True if at least one socket listens on TCP `port` and every socket that
/// does belongs to a process in process group `group`.
#[cfg(target_os = "linux")]
pub fn held_by_group(port: u16, group: u32) -> std::io::Result<bool> {
    let mut listening = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        match std::fs::read_to_string(table) {
            Ok(text) => listening.extend(listening_inodes(&text, port)),
            // IPv6 may be disabled; the IPv4 table is always there.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    if listening.is_empty() {
        return Ok(false);
    }
    let held = group_socket_inodes(group)?;
    Ok(listening.iter().all(|inode| held.contains(inode)))
}

#[cfg(not(target_os = "linux"))]
pub fn held_by_group(_port: u16, _group: u32) -> std::io::Result<bool> {
    Ok(true)
}

/// The inodes of the sockets in state LISTEN on `port`, read from the text
/// of `/proc/net/tcp` or `/proc/net/tcp6`.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            let (_, local_port) = local.rsplit_once(':')?;
            let listens_here =
                u16::from_str_radix(local_port, 16).ok()? == port && *fields.get(3)? == LISTEN;
            listens_here.then(|| fields.get(9)?.parse().ok()).flatten()
        })
        .collect()
}

/// The socket inodes open in any process of process group `group`.
#[cfg(target_os = "linux")]
fn group_socket_inodes(group: u32) -> std::io::Result<std::collections::HashSet<u64>> {
    let mut inodes = std::collections::HashSet::new();
    for entry in std::fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        // Processes come and go while we read: a vanished one holds nothing.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if process_group(&stat) != Some(group) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Some(inode) = std::fs::read_link(fd.path())
                .ok()
                .and_then(|target| socket_inode(&target.to_string_lossy()))
            {
                inodes.insert(inode);
            }
        }
    }
    Ok(inodes)
}

/// The process group in the text of `/proc/<pid>/stat`. The command name
/// (field 2) is in parentheses and may itself hold spaces and parentheses,
/// so the fields are counted from the last `)`.
fn process_group(stat: &str) -> Option<u32> {
    let (_, after_name) = stat.rsplit_once(')')?;
    // state ppid pgrp
    after_name.split_whitespace().nth(2)?.parse().ok()
}

/// `socket:[12345]` → 12345.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_tables_and_stat_lines_are_read_by_field() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
            0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000 100 0 0 10 0\n   \
            1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 4343 1 0000 100 0 0 10 0\n   \
            2: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 99 1 0000 100 0 0 10 0\n";
        assert_eq!(listening_inodes(table, 8080), vec![4242], "LISTEN only");
        assert_eq!(listening_inodes(table, 80), vec![99]);
        assert!(listening_inodes(table, 81).is_empty());
        assert_eq!(process_group("17 (a) b) c) S 1 17 17 0 -1"), Some(17));
        assert_eq!(socket_inode("socket:[4242]"), Some(4242));
        assert_eq!(socket_inode("pipe:[4242]"), None);
    }

    #[test]
    fn a_port_is_held_by_the_group_that_listens_on_it_only() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let own = nix::unistd::getpgrp().as_raw() as u32;
        assert!(held_by_group(port, own).unwrap());

        // Another group (a child in a group of its own) does not hold it.
        let mut other = std::process::Command::new("sleep");
        std::os::unix::process::CommandExt::process_group(&mut other, 0);
        let mut child = other.arg("5").spawn().unwrap();
        let verdict = held_by_group(port, child.id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(!verdict.unwrap());

        drop(listener);
        assert!(!held_by_group(port, own).unwrap(), "nobody listens");
    }
}
