//! Requests from the far end inside an answered call, as a PBX sends them:
//! hold (re-INVITE sendonly), unhold to a new media address, OPTIONS and INFO.
//! The call must survive all of it, answer each with the right SDP, and move
//! its RTP to the new address.

mod common;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{run_call, test_dir, Sipp};

#[test]
fn reinvite_hold_unhold_options_info_keep_the_call() {
    let dir = test_dir("in-dialog");
    // Where the peer moves its media on unhold: we listen there ourselves.
    let new_media = UdpSocket::bind("127.0.0.1:0").expect("bind new media port");
    new_media
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let new_port = new_media.local_addr().expect("addr").port();

    let sipp = Sipp::uas(dir.path(), "uas_reinvite.xml")
        .replace("@UNHOLD_PORT@", &new_port.to_string())
        .start();
    let uri = sipp.uri("pbx");
    let done = Arc::new(AtomicBool::new(false));
    let stop = done.clone();
    let counter = std::thread::spawn(move || {
        let mut packets = 0u32;
        let mut buf = [0u8; 2048];
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end && !stop.load(Ordering::Relaxed) {
            if let Ok(n) = new_media.recv(&mut buf) {
                // RTP version 2, PCMU.
                if n == 12 + 160 && buf[0] >> 6 == 2 && buf[1] & 0x7f == 0 {
                    packets += 1;
                }
            }
        }
        packets
    });

    let call = run_call(dir.path(), &["--max-duration", "20", &uri]);
    done.store(true, Ordering::Relaxed);
    let run = sipp.wait(Duration::from_secs(20));
    assert!(
        run.passed,
        "sipp saw a wrong answer (hold must be answered recvonly, unhold sendrecv; OPTIONS and INFO 200; BYE 200):\n{}\n{}",
        run.errors,
        common::tail(&run.messages, 60)
    );
    assert_eq!(call.outcome(), "answered", "{}", call.json);
    assert_eq!(call.json["ended_by"], "callee", "{}", call.json);
    let packets = counter.join().expect("counter");
    assert!(
        packets >= 10,
        "after unhold our RTP must go to the new port {new_port}: got {packets} packets"
    );
}
