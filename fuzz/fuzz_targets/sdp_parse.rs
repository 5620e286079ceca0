//! Any body as a peer's SDP. Must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use outdial::media::g711::Codec;
use outdial::sip::sdp::{parse_remote, Format};

fuzz_target!(|data: &[u8]| {
    let ours = [
        Format::Audio(Codec::Pcmu),
        Format::Audio(Codec::Pcma),
        Format::TelephoneEvent(101),
    ];
    let _ = parse_remote(data, &ours);
});
