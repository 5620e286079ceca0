//! Leg linking (the media half of a SIP bridge), sans-IO: turns each RTP packet received on one
//! leg into the packet the other leg sends at once, in that leg's own stream.
//!
//! [`RelayTx`] belongs to the leg that sends. For every packet the other leg received it:
//! * rewrites SSRC, sequence number and timestamp into the sending leg's stream: the first
//!   relayed packet continues where the leg's own stream stood ([`RtpSender`]'s next sequence
//!   number and timestamp) and carries the marker bit; later ones keep the received packets'
//!   spacing (a lost packet stays a gap the far end can count, a timestamp gap stays a gap).
//!   A new SSRC on the receiving side (the far end restarted its stream) anchors again, so the
//!   sending leg's stream never jumps;
//! * keeps the payload when both legs use one codec, transcodes PCMU↔PCMA byte by byte, and
//!   any other pair (G.722 with the `g722` feature) through PCM with stateful coders;
//! * passes telephone-events (RFC 4733) on with the sending leg's negotiated payload type, or
//!   — when that leg has no telephone-event — sends the digit's tone as audio in their place;
//!   zero-length events that start and end nothing (padding some senders send) go as silence
//!   either way, never as a key;
//! * sends the RFC 4733 packets queued on the sending leg (digits heard in-band on the other
//!   leg) in place of audio, one per received packet, as a paced sender would.
//!
//! It must NOT buffer, wait, or touch a socket or a clock: the engine calls it with each packet
//! as it is read and sends what it writes. No allocation after the first transcoded packet.

use super::codec::{FrameDecoder, FrameEncoder};
use super::dtmf::{digit_for_event, Rfc4733Sender, ToneGenerator};
use super::g711::{alaw_to_ulaw, ulaw_to_alaw, Codec};
use super::rtp::{write_rtp, RtpPacket, RtpSender};
use super::FRAME_SAMPLES;

/// What the receiving leg made of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InKind {
    /// Audio in this codec.
    Audio(Codec),
    /// Comfort noise (payload type 13): passed on as is.
    Comfort,
    /// A telephone-event (RFC 4733) of the receiving leg's negotiated payload type.
    Event,
    /// Anything else: not relayed.
    Other,
}

/// What the sending leg negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutStream {
    pub codec: Codec,
    /// Its telephone-event payload type; `None`: digits go as tones.
    pub dtmf_pt: Option<u8>,
}

/// What [`RelayTx::forward`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relayed {
    /// The payload as received (same codec, or comfort noise).
    Forwarded,
    /// Decoded and encoded again in the sending leg's codec.
    Transcoded,
    /// A telephone-event, with the sending leg's payload type.
    Event,
    /// A telephone-event turned into 20 ms of audio: the digit's tone (no telephone-event
    /// there), or silence (the event's end, padding).
    Tone,
    /// A queued RFC 4733 packet, sent in place of the received audio.
    QueuedEvent,
    /// Nothing to send.
    Dropped,
}

/// Where the received stream is mapped to: out = in + offset.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    ssrc: u32,
    seq_offset: u16,
    ts_offset: u32,
}

/// The stream one leg sends while linked; see the module documentation.
#[derive(Debug, Default)]
pub struct RelayTx {
    anchor: Option<Anchor>,
    decoder: FrameDecoder,
    encoder: FrameEncoder,
    pcm: Vec<i16>,
    payload: Vec<u8>,
    tone: ToneGenerator,
    relayed: u64,
}

impl RelayTx {
    pub fn new() -> Self {
        Self::default()
    }

    /// Packets written so far.
    pub fn relayed(&self) -> u64 {
        self.relayed
    }

    /// Writes into `out` (cleared) the packet the sending leg sends for `packet`, received on
    /// the other leg, and moves `sender` (the sending leg's stream) past it.
    pub fn forward(
        &mut self,
        packet: &RtpPacket<'_>,
        kind: InKind,
        to: OutStream,
        dtmf_tx: &mut Rfc4733Sender,
        sender: &mut RtpSender,
        out: &mut Vec<u8>,
    ) -> Relayed {
        out.clear();
        if kind == InKind::Other || packet.payload.is_empty() {
            return Relayed::Dropped;
        }
        let mut marker = packet.marker;
        let anchor = match self.anchor {
            Some(a) if a.ssrc == packet.ssrc => a,
            _ => {
                let a = Anchor {
                    ssrc: packet.ssrc,
                    seq_offset: sender.next_sequence().wrapping_sub(packet.sequence),
                    ts_offset: sender.next_timestamp().wrapping_sub(packet.timestamp),
                };
                self.anchor = Some(a);
                marker = true;
                a
            }
        };
        let seq = packet.sequence.wrapping_add(anchor.seq_offset);
        let ts = packet.timestamp.wrapping_add(anchor.ts_offset);
        let ssrc = sender.ssrc();
        let relayed = match kind {
            InKind::Event => {
                let p = packet.payload;
                let end = p.get(1).is_some_and(|b| b & 0x80 != 0);
                let length = p.get(2..4).map_or(0, |d| u16::from_be_bytes([d[0], d[1]]));
                // A zero-length event that neither starts (marker) nor ends one is no key
                // press: padding some senders (sipp's play_dtmf) send before their keys.
                let padding = length == 0 && !end && !packet.marker;
                match to.dtmf_pt {
                    Some(pt) if !padding => {
                        write_rtp(out, marker, pt, seq, ts, ssrc, p);
                        advance(sender, seq, ts);
                        Relayed::Event
                    }
                    _ => {
                        // 20 ms of the digit in place of each event packet; silence once it
                        // ends, for padding, and for an event's first packet of length 0.
                        match digit_for_event(p[0]) {
                            Some(digit) if to.dtmf_pt.is_none() && !end && length > 0 => {
                                let _ = self.tone.start(digit);
                            }
                            _ => self.tone.stop(),
                        }
                        self.pcm.clear();
                        self.pcm.resize(FRAME_SAMPLES, 0);
                        self.tone.fill(&mut self.pcm);
                        self.payload.clear();
                        self.encoder.encode(to.codec, &self.pcm, &mut self.payload);
                        // Event packets all carry the event's start: the audio goes on the
                        // sending leg's running clock instead.
                        let audio_ts = sender.next_timestamp();
                        write_rtp(
                            out,
                            marker,
                            to.codec.payload_type(),
                            seq,
                            audio_ts,
                            ssrc,
                            &self.payload,
                        );
                        advance(sender, seq, audio_ts.wrapping_add(FRAME_SAMPLES as u32));
                        Relayed::Tone
                    }
                }
            }
            InKind::Audio(_) | InKind::Comfort => {
                self.tone.stop();
                let samples = packet.payload.len() as u32;
                if let (Some(pt), Some(ev)) = (to.dtmf_pt, dtmf_tx.next_packet()) {
                    let event_ts = ts.wrapping_sub(ev.timestamp_offset);
                    write_rtp(out, ev.marker, pt, seq, event_ts, ssrc, &ev.payload);
                    advance(sender, seq, ts.wrapping_add(samples));
                    Relayed::QueuedEvent
                } else {
                    let relayed = self.audio(packet, kind, to.codec, marker, seq, ts, ssrc, out);
                    advance(sender, seq, ts.wrapping_add(samples));
                    relayed
                }
            }
            InKind::Other => Relayed::Dropped,
        };
        self.relayed += 1;
        relayed
    }

    #[allow(clippy::too_many_arguments)]
    fn audio(
        &mut self,
        packet: &RtpPacket<'_>,
        kind: InKind,
        codec: Codec,
        marker: bool,
        seq: u16,
        ts: u32,
        ssrc: u32,
        out: &mut Vec<u8>,
    ) -> Relayed {
        let from = match kind {
            InKind::Audio(c) if c != codec => c,
            _ => {
                write_rtp(
                    out,
                    marker,
                    packet.payload_type,
                    seq,
                    ts,
                    ssrc,
                    packet.payload,
                );
                return Relayed::Forwarded;
            }
        };
        write_rtp(out, marker, codec.payload_type(), seq, ts, ssrc, &[]);
        match (from, codec) {
            (Codec::Pcmu, Codec::Pcma) => {
                out.extend(packet.payload.iter().map(|&b| ulaw_to_alaw(b)))
            }
            (Codec::Pcma, Codec::Pcmu) => {
                out.extend(packet.payload.iter().map(|&b| alaw_to_ulaw(b)))
            }
            _ => {
                self.pcm.clear();
                self.decoder.decode(from, packet.payload, &mut self.pcm);
                self.encoder.encode(codec, &self.pcm, out);
            }
        }
        Relayed::Transcoded
    }
}

/// Moves the sending leg's stream past a packet with sequence number `seq` whose audio ends at
/// timestamp `next_ts`, unless the packet is older than what was already sent (reordered).
fn advance(sender: &mut RtpSender, seq: u16, next_ts: u32) {
    if seq.wrapping_sub(sender.next_sequence()) as i16 >= 0 {
        sender.set_next(seq.wrapping_add(1), next_ts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::dtmf::InbandDtmfDetector;

    const PCMU_OUT: OutStream = OutStream {
        codec: Codec::Pcmu,
        dtmf_pt: Some(101),
    };

    fn packet<'a>(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &'a [u8]) -> RtpPacket<'a> {
        RtpPacket {
            marker: false,
            payload_type: pt,
            sequence: seq,
            timestamp: ts,
            ssrc,
            payload,
        }
    }

    fn parsed(buf: &[u8]) -> RtpPacket<'_> {
        RtpPacket::parse(buf).expect("relay writes valid RTP")
    }

    #[test]
    fn same_codec_continues_the_sending_legs_stream_with_a_marker() {
        let mut relay = RelayTx::new();
        let mut sender = RtpSender::new(0xB0B, 5000, 90_000);
        let mut dtmf = Rfc4733Sender::new();
        let mut out = Vec::new();
        let payload = [0x55u8; 160];
        let mut got = Vec::new();
        // The far end's stream: 100, 101, (102 lost), 103.
        for (seq, ts) in [(100u16, 1000u32), (101, 1160), (103, 1480)] {
            let p = packet(0, seq, ts, 0xA, &payload);
            let r = relay.forward(
                &p,
                InKind::Audio(Codec::Pcmu),
                PCMU_OUT,
                &mut dtmf,
                &mut sender,
                &mut out,
            );
            assert_eq!(r, Relayed::Forwarded);
            let o = parsed(&out);
            got.push((o.marker, o.sequence, o.timestamp, o.ssrc));
            assert_eq!(o.payload, &payload[..]);
        }
        assert_eq!(
            got,
            vec![
                (true, 5000, 90_000, 0xB0B),
                (false, 5001, 90_160, 0xB0B),
                (false, 5003, 90_480, 0xB0B)
            ],
            "rewritten into the leg's stream, the loss still visible"
        );
        assert_eq!(
            (sender.next_sequence(), sender.next_timestamp()),
            (5004, 90_640)
        );
    }

    #[test]
    fn a_restarted_far_end_stream_does_not_make_the_leg_jump() {
        let mut relay = RelayTx::new();
        let mut sender = RtpSender::new(7, 10, 0);
        let mut dtmf = Rfc4733Sender::new();
        let mut out = Vec::new();
        let payload = [0xFFu8; 160];
        let p = packet(0, 60_000, 4_000_000, 1, &payload);
        relay.forward(
            &p,
            InKind::Audio(Codec::Pcmu),
            PCMU_OUT,
            &mut dtmf,
            &mut sender,
            &mut out,
        );
        let p = packet(0, 3, 17, 2, &payload);
        relay.forward(
            &p,
            InKind::Audio(Codec::Pcmu),
            PCMU_OUT,
            &mut dtmf,
            &mut sender,
            &mut out,
        );
        let o = parsed(&out);
        assert_eq!((o.sequence, o.timestamp, o.marker), (11, 160, true));
    }

    #[test]
    fn reordered_packet_keeps_its_place_and_does_not_rewind_the_stream() {
        let mut relay = RelayTx::new();
        let mut sender = RtpSender::new(7, 10, 0);
        let mut dtmf = Rfc4733Sender::new();
        let mut out = Vec::new();
        let payload = [0xFFu8; 160];
        for (seq, ts) in [(1u16, 0u32), (3, 320), (2, 160)] {
            let p = packet(0, seq, ts, 1, &payload);
            relay.forward(
                &p,
                InKind::Audio(Codec::Pcmu),
                PCMU_OUT,
                &mut dtmf,
                &mut sender,
                &mut out,
            );
        }
        assert_eq!(parsed(&out).sequence, 11);
        assert_eq!((sender.next_sequence(), sender.next_timestamp()), (13, 480));
    }

    #[test]
    fn pcmu_to_pcma_is_transcoded_byte_for_byte() {
        let mut relay = RelayTx::new();
        let mut sender = RtpSender::new(7, 0, 0);
        let mut dtmf = Rfc4733Sender::new();
        let mut out = Vec::new();
        let pcm: Vec<i16> = (0..160)
            .map(|i| ((i * 397) % 20_000 - 10_000) as i16)
            .collect();
        let mut ulaw = Vec::new();
        Codec::Pcmu.encode(&pcm, &mut ulaw);
        let to = OutStream {
            codec: Codec::Pcma,
            dtmf_pt: None,
        };
        let p = packet(0, 1, 0, 1, &ulaw);
        let r = relay.forward(
            &p,
            InKind::Audio(Codec::Pcmu),
            to,
            &mut dtmf,
            &mut sender,
            &mut out,
        );
        assert_eq!(r, Relayed::Transcoded);
        let o = parsed(&out);
        assert_eq!(o.payload_type, 8);
        let expected: Vec<u8> = ulaw.iter().map(|&b| ulaw_to_alaw(b)).collect();
        assert_eq!(o.payload, &expected[..]);
        // And the audio survives: decoded A-law is close to the original.
        let mut back = Vec::new();
        Codec::Pcma.decode(o.payload, &mut back);
        let worst = pcm.iter().zip(&back).map(|(a, b)| (a - b).abs()).max();
        assert!(worst.is_some_and(|w| w < 700), "worst error {worst:?}");
    }

    #[cfg(feature = "g722")]
    #[test]
    fn pcmu_to_g722_goes_through_pcm() {
        let mut relay = RelayTx::new();
        let mut sender = RtpSender::new(7, 0, 0);
        let mut dtmf = Rfc4733Sender::new();
        let mut out = Vec::new();
        let to = OutStream {
            codec: Codec::G722,
            dtmf_pt: None,
        };
        let payload = [0x55u8; 160];
        for k in 0..3u16 {
            let p = packet(0, k, u32::from(k) * 160, 1, &payload);
            let r = relay.forward(
                &p,
                InKind::Audio(Codec::Pcmu),
                to,
                &mut dtmf,
                &mut sender,
                &mut out,
            );
            assert_eq!(r, Relayed::Transcoded);
            let o = parsed(&out);
            assert_eq!(o.payload_type, 9);
            assert_eq!(o.payload.len(), 160, "64 kbit/s: 160 bytes per 20 ms");
        }
    }

    #[test]
    fn telephone_events_take_the_sending_legs_payload_type() {
        let mut relay = RelayTx::new();
        let mut sender = RtpSender::new(7, 0, 0);
        let mut dtmf = Rfc4733Sender::new();
        let mut out = Vec::new();
        let event = [5u8, 10, 0, 160];
        let p = packet(96, 1, 800, 1, &event);
        let to = OutStream {
            codec: Codec::Pcmu,
            dtmf_pt: Some(101),
        };
        let r = relay.forward(&p, InKind::Event, to, &mut dtmf, &mut sender, &mut out);
        assert_eq!(r, Relayed::Event);
        let o = parsed(&out);
        assert_eq!((o.payload_type, o.payload), (101, &event[..]));
    }

    #[test]
    fn events_become_tones_for_a_leg_without_telephone_event() {
        let mut relay = RelayTx::new();
        let mut sender = RtpSender::new(7, 0, 0);
        let mut dtmf = Rfc4733Sender::new();
        let mut out = Vec::new();
        let to = OutStream {
            codec: Codec::Pcma,
            dtmf_pt: None,
        };
        let mut detector = InbandDtmfDetector::new();
        let mut heard = String::new();
        let mut seqs = Vec::new();
        // Digit 7 held 200 ms (10 packets, then 3 end packets), then silence as audio.
        let mut seq = 40u16;
        for k in 0..13u16 {
            let end = k >= 10;
            let dur = (k.min(9) + 1) * 160;
            let ev = [
                7u8,
                if end { 0x80 | 10 } else { 10 },
                (dur >> 8) as u8,
                dur as u8,
            ];
            let p = packet(101, seq, 8000, 1, &ev);
            let r = relay.forward(&p, InKind::Event, to, &mut dtmf, &mut sender, &mut out);
            assert_eq!(r, Relayed::Tone);
            let o = parsed(&out);
            assert_eq!(o.payload_type, 8);
            seqs.push(o.sequence);
            let mut pcm = Vec::new();
            Codec::Pcma.decode(o.payload, &mut pcm);
            if let Some(d) = detector.push(&pcm, u64::from(k) * 20) {
                heard.push(d.digit);
            }
            seq += 1;
        }
        let silence = [0xD5u8; 160];
        for k in 13..30u16 {
            let p = packet(8, seq, 8000 + u32::from(k) * 160, 1, &silence);
            relay.forward(
                &p,
                InKind::Audio(Codec::Pcma),
                to,
                &mut dtmf,
                &mut sender,
                &mut out,
            );
            let mut pcm = Vec::new();
            Codec::Pcma.decode(parsed(&out).payload, &mut pcm);
            if let Some(d) = detector.push(&pcm, u64::from(k) * 20) {
                heard.push(d.digit);
            }
            seq += 1;
        }
        while let Some(d) = detector.next_digit() {
            heard.push(d.digit);
        }
        assert_eq!(heard, "7");
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "no sequence gaps"
        );
    }

    #[test]
    fn zero_length_events_become_silence_not_a_zero_key() {
        let mut relay = RelayTx::new();
        let mut sender = RtpSender::new(7, 0, 0);
        let mut dtmf = Rfc4733Sender::new();
        let mut out = Vec::new();
        let to = OutStream {
            codec: Codec::Pcmu,
            dtmf_pt: None,
        };
        let mut detector = InbandDtmfDetector::new();
        let mut heard = String::new();
        let mut t = 0u64;
        let mut seq = 1u16;
        let mut send = |relay: &mut RelayTx, payload: [u8; 4], heard: &mut String| {
            let p = packet(96, seq, 0, 1, &payload);
            relay.forward(&p, InKind::Event, to, &mut dtmf, &mut sender, &mut out);
            let mut pcm = Vec::new();
            Codec::Pcmu.decode(parsed(&out).payload, &mut pcm);
            if let Some(d) = detector.push(&pcm, t) {
                heard.push(d.digit);
            }
            t += 20;
            seq += 1;
        };
        // A sender padding with event 0 of length 0 for 400 ms (as sipp's play_dtmf does),
        // then key 1: its first packet of length 0, then 200 ms, then end packets (silence).
        for _ in 0..20 {
            send(&mut relay, [0, 10, 0, 0], &mut heard);
        }
        for k in 0..11u16 {
            let dur = k * 160;
            send(&mut relay, [1, 10, (dur >> 8) as u8, dur as u8], &mut heard);
        }
        for _ in 0..13 {
            send(&mut relay, [1, 0x80 | 10, 0x06, 0x40], &mut heard);
        }
        while let Some(d) = detector.next_digit() {
            heard.push(d.digit);
        }
        assert_eq!(heard, "1", "the padding is no key");
    }

    #[test]
    fn padding_events_reach_a_leg_with_telephone_event_as_silence() {
        let mut relay = RelayTx::new();
        let mut sender = RtpSender::new(7, 0, 0);
        let mut dtmf = Rfc4733Sender::new();
        let mut out = Vec::new();
        let mut got = Vec::new();
        // Padding (event 0, length 0, no marker), then key 1: its marked start of length 0,
        // 20 ms on, its end.
        let padding = packet(96, 1, 0, 1, &[0, 10, 0, 0]);
        let r = relay.forward(
            &padding,
            InKind::Event,
            PCMU_OUT,
            &mut dtmf,
            &mut sender,
            &mut out,
        );
        assert_eq!(r, Relayed::Tone);
        got.push(parsed(&out).payload_type);
        assert_eq!(parsed(&out).payload, &[0xFFu8; 160][..], "µ-law silence");
        let first = [1u8, 10, 0, 0];
        let mut start = packet(96, 2, 160, 1, &first);
        start.marker = true;
        relay.forward(
            &start,
            InKind::Event,
            PCMU_OUT,
            &mut dtmf,
            &mut sender,
            &mut out,
        );
        got.push(parsed(&out).payload_type);
        for (seq, payload) in [(3u16, [1u8, 10, 0, 160]), (4, [1, 0x80 | 10, 1, 64])] {
            let p = packet(96, seq, 160, 1, &payload);
            let r = relay.forward(
                &p,
                InKind::Event,
                PCMU_OUT,
                &mut dtmf,
                &mut sender,
                &mut out,
            );
            assert_eq!(r, Relayed::Event);
            got.push(parsed(&out).payload_type);
        }
        assert_eq!(got, vec![0, 101, 101, 101]);
    }

    #[test]
    fn queued_digits_replace_audio_as_rfc4733() {
        let mut relay = RelayTx::new();
        let mut sender = RtpSender::new(7, 0, 0);
        let mut dtmf = Rfc4733Sender::new();
        dtmf.queue('9', 100).expect("valid digit");
        let mut out = Vec::new();
        let audio = [0xFFu8; 160];
        let mut kinds = Vec::new();
        for k in 0..12u16 {
            let p = packet(0, k, u32::from(k) * 160, 1, &audio);
            let r = relay.forward(
                &p,
                InKind::Audio(Codec::Pcmu),
                PCMU_OUT,
                &mut dtmf,
                &mut sender,
                &mut out,
            );
            let o = parsed(&out);
            if r == Relayed::QueuedEvent {
                assert_eq!(o.payload_type, 101);
                assert_eq!(o.payload[0], 9);
                assert_eq!(o.timestamp, 0, "every packet carries the event's start");
            }
            kinds.push(r);
        }
        assert_eq!(kinds[0], Relayed::QueuedEvent);
        assert!(
            kinds.contains(&Relayed::Forwarded),
            "audio again after the digit"
        );
    }

    #[test]
    fn other_payload_types_are_dropped() {
        let mut relay = RelayTx::new();
        let mut sender = RtpSender::new(7, 0, 0);
        let mut dtmf = Rfc4733Sender::new();
        let mut out = Vec::new();
        let p = packet(99, 1, 0, 1, &[1, 2, 3]);
        let r = relay.forward(
            &p,
            InKind::Other,
            PCMU_OUT,
            &mut dtmf,
            &mut sender,
            &mut out,
        );
        assert_eq!(r, Relayed::Dropped);
        assert!(out.is_empty());
        assert_eq!(sender.next_sequence(), 0);
    }
}
