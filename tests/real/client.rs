//! A client of the fixture app, shared by the real-engine tests and the upgrade
//! benchmark (which includes this file by path).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Whether one `POST /rows?n=1` through the app on `port` was acknowledged (it may
/// fail: the port closes in the freeze). The app does not count the table for
/// it, so a write takes as long at 4M rows as at 400k.
pub fn try_post(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    ) else {
        return false;
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    if s.write_all(
        b"POST /rows?n=1&count=no HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .is_err()
    {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.1 200")
}
