//! Any bytes as an RFC 4733 payload and as a SIP INFO DTMF body. Must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use outdial::media::dtmf::{parse_info_body, Rfc4733Receiver};

fuzz_target!(|data: &[u8]| {
    let mut rx = Rfc4733Receiver::new();
    for (i, chunk) in data.chunks(6).enumerate() {
        let seq = u16::from_le_bytes([chunk.first().copied().unwrap_or(0), 0]);
        let _ = rx.on_packet(seq, (i as u32) * 160, i == 0, chunk, i as u64 * 20);
        let _ = rx.poll(i as u64 * 20 + 300);
    }
    let _ = parse_info_body("application/dtmf-relay", data);
    let _ = parse_info_body("application/dtmf", data);
});
