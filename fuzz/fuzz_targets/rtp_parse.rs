//! Any datagram as RTP, and the decode of its payload; and as SRTP and SRTCP to open with a
//! call's keys (what an SRTP leg does with every datagram first). Must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use outdial::media::g711::Codec;
use outdial::media::rtp::RtpPacket;
use outdial::media::srtp::{MasterKey, SrtpKeys, SrtpStreams, Suite};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = RtpPacket::parse(data) {
        let mut out = Vec::new();
        if let Some(c) = Codec::from_payload_type(p.payload_type) {
            c.decode(p.payload, &mut out);
        }
    }
    let key = MasterKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd").expect("30 bytes");
    for suite in [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32] {
        let keys = SrtpKeys {
            suite,
            local: key.clone(),
            remote: key.clone(),
        };
        if let Ok(mut streams) = SrtpStreams::new(keys) {
            let mut out = Vec::new();
            let _ = streams.unprotect_rtp(data, &mut out);
            let _ = streams.unprotect_rtcp(data, &mut out);
            let _ = streams.protect_rtp(data, &mut out);
            let _ = streams.protect_rtcp(data, &mut out);
        }
    }
});
