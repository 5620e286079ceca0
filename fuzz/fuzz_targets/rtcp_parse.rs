//! Any datagram as an RTCP compound packet, walked to the end. Must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(compound) = outdial::media::rtcp::parse_compound(data) {
        for p in compound.packets() {
            let _ = format!("{p:?}");
        }
    }
});
