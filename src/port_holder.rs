//! Who holds a host port that a container could not publish: another container
//! of the engine, or a process outside Docker. Used to turn Docker's "address
//! already in use" into a message that names the holder and what to run.
//!
//! Not a port scanner: it answers for the ports named in one engine error (and
//! the spec's public ports), once, after a start or create has failed.

use std::net::IpAddr;
use std::sync::LazyLock;

use regex::Regex;

use crate::engine::Engine;

/// Whether an engine error says a host port was taken.
pub fn is_port_conflict(message: &str) -> bool {
    message.contains("address already in use") || message.contains("port is already allocated")
}

/// `ip:port` pairs in an engine error, in order: Docker names the host address it
/// could not bind (`listen tcp4 127.0.0.1:8080: bind: …`, `Bind for
/// 0.0.0.0:8080 failed: …`).
fn ports_in(message: &str) -> Vec<(Option<IpAddr>, u16)> {
    static ADDR: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"(?:listen tcp[46]? |Bind for |host port for )\[?([0-9a-fA-F.:]*?)\]?:(\d{1,5})\b",
        )
        .expect("valid regex")
    });
    ADDR.captures_iter(message)
        .filter_map(|c| Some((c[1].parse().ok(), c[2].parse().ok()?)))
        .collect()
}

/// Sentences naming who holds each taken port among those in `message` and
/// `candidates` (host address, host port), with what to run. Empty when none of
/// them is taken (the conflict may have cleared).
pub async fn explain<E: Engine>(
    engine: &E,
    message: &str,
    candidates: &[(Option<IpAddr>, u16)],
) -> Vec<String> {
    let mut ports = ports_in(message);
    ports.extend(candidates.iter().copied());
    let mut seen = std::collections::BTreeSet::new();
    ports.retain(|(_, p)| seen.insert(*p));
    let containers = engine.list_containers().await.unwrap_or_default();
    let mut out = Vec::new();
    for (ip, port) in ports {
        let shown = match ip {
            Some(ip) if !ip.is_unspecified() => format!("{ip}:{port}"),
            _ => format!("port {port}"),
        };
        let by_container = containers.iter().find(|c| {
            c.state.is_up()
                && c.ports.iter().any(|p| {
                    p.split("->")
                        .next()
                        .is_some_and(|h| h.ends_with(&format!(":{port}")))
                })
        });
        if let Some(c) = by_container {
            out.push(format!(
                "{shown} is held by container {} ({}): stop it (`docker stop {}`) or give \
                 one of them another port",
                c.name, c.image, c.name
            ));
        } else if let Some((pid, command)) = listening_process(port) {
            out.push(format!(
                "{shown} is held by a process outside Docker: pid {pid} ({command}); stop it \
                 (`kill {pid}`) or choose another port in the spec"
            ));
        } else if listening(port) {
            out.push(format!(
                "a process outside Docker listens on {shown} (see `ss -ltnp 'sport = :{port}'`); \
                 stop it or choose another port in the spec"
            ));
        }
    }
    out
}

/// Inodes of the sockets listening on a TCP port (IPv4 and IPv6).
fn listening_inodes(port: u16) -> Vec<u64> {
    let v4 = procfs::net::tcp().unwrap_or_default();
    let v6 = procfs::net::tcp6().unwrap_or_default();
    v4.into_iter()
        .chain(v6)
        .filter(|e| e.state == procfs::net::TcpState::Listen && e.local_address.port() == port)
        .map(|e| e.inode)
        .collect()
}

fn listening(port: u16) -> bool {
    !listening_inodes(port).is_empty()
}

/// The pid and command line of the process listening on a TCP port, when
/// `/proc` lets gemctl see it (another user's process needs root).
fn listening_process(port: u16) -> Option<(i32, String)> {
    let inodes = listening_inodes(port);
    if inodes.is_empty() {
        return None;
    }
    procfs::process::all_processes()
        .ok()?
        .flatten()
        .find_map(|p| {
            let holds = p.fd().ok()?.flatten().any(|fd| {
                matches!(fd.target, procfs::process::FDTarget::Socket(i) if inodes.contains(&i))
            });
            holds.then(|| {
                let command = p
                    .cmdline()
                    .ok()
                    .filter(|c| !c.is_empty())
                    .map(|c| c.join(" "))
                    .unwrap_or_else(|| "command unknown".into());
                (p.pid, command)
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_port_errors_name_the_address() {
        let proxy = "driver failed programming external connectivity on endpoint gem-2 (ab12): \
                     Error starting userland proxy: listen tcp4 127.0.0.1:37135: bind: address already in use";
        assert!(is_port_conflict(proxy));
        assert_eq!(
            ports_in(proxy),
            [(Some("127.0.0.1".parse().unwrap()), 37135)]
        );
        let allocated = "Bind for 0.0.0.0:8080 failed: port is already allocated";
        assert!(is_port_conflict(allocated));
        assert_eq!(
            ports_in(allocated),
            [(Some("0.0.0.0".parse().unwrap()), 8080)]
        );
        assert!(ports_in("docker start gem-2 failed: no such image").is_empty());
    }

    #[test]
    fn a_listener_of_this_process_is_found_with_its_pid() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let (pid, command) = listening_process(port).expect("the listener is seen");
        assert_eq!(pid as u32, std::process::id());
        assert!(!command.is_empty());
        drop(l);
        assert!(listening_process(port).is_none());
    }
}
