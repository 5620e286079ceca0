//! Any datagram through the SIP socket guard: classify it for the flood limit,
//! check it and, for requests, build the error response; and any bytes as the start of a TCP
//! stream, framed as the TCP listener does. Must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use outdial::sip::tcp_guard::{frame, Frame};

fuzz_target!(|data: &[u8]| {
    let from: std::net::SocketAddr = ([127, 0, 0, 1], 5060).into();
    let _ = outdial::sip::flood::classify(data);
    let _ = outdial::sip::guard::check(data);
    let _ = outdial::sip::guard::error_response(data, 400, "Bad Request", from, "fuzz");
    match frame(data) {
        Frame::Message(len) | Frame::KeepAlive(len) => assert!(len <= data.len()),
        Frame::Incomplete | Frame::Broken(_) => {}
    }
});
