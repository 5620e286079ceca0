//! Any body as a peer's SDP, then the SRTP negotiation and our answer under every policy. Must
//! never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use outdial::media::g711::Codec;
use outdial::media::srtp::SrtpPolicy;
use outdial::sip::sdp::{parse_remote, Format, LocalMedia};

fuzz_target!(|data: &[u8]| {
    let ours = [
        Format::Audio(Codec::Pcmu),
        Format::Audio(Codec::Pcma),
        Format::TelephoneEvent(101),
    ];
    let Ok(remote) = parse_remote(data, &ours) else {
        return;
    };
    for policy in [SrtpPolicy::Off, SrtpPolicy::Optional, SrtpPolicy::Required] {
        for peer_offered in [true, false] {
            let mut local =
                LocalMedia::new(std::net::Ipv4Addr::LOCALHOST.into(), 4000).with_srtp(policy);
            if let Ok(keys) = local.srtp_keys(&remote, peer_offered) {
                let _ = local.answer(&remote, &ours, keys.as_ref());
            }
        }
    }
});
