//! Any datagram as RTP, and the decode of its payload. Must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use outdial::media::g711::Codec;
use outdial::media::rtp::RtpPacket;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = RtpPacket::parse(data) {
        let mut out = Vec::new();
        if let Some(c) = Codec::from_payload_type(p.payload_type) {
            c.decode(p.payload, &mut out);
        }
    }
});
