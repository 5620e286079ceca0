//! Self-tests of the real-peer harness (tests/common): they need no outdial at all.
//!
//! They prove, on the machine running the tests, that the audio helpers and the correlation
//! measure behave, that every sipp UAS scenario in tests/scenarios runs against sipp's own UAC,
//! that baresip answers, plays and records, and that the kamailio carrier challenges, accepts
//! and relays. When these fail, the outdial tests that use the same peers cannot be trusted.

mod common;

use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn ulaw_codec_round_trips_within_quantization() {
    for s in [
        -32768i32, -20000, -1000, -1, 0, 1, 7, 100, 1000, 8159, 20000, 32767,
    ] {
        let s = s as i16;
        let back = ulaw_decode(ulaw_encode(s));
        let err = (i32::from(back) - i32::from(s)).abs();
        let allowed = (i32::from(s).abs() / 16).max(8) + 4;
        assert!(err <= allowed, "{s} -> {back}");
    }
    // the well-known code points
    assert_eq!(ulaw_encode(0), 0xFF);
    assert_eq!(ulaw_decode(0xFF), 0);
    assert_eq!(ulaw_decode(0x00), -32124);
    assert_eq!(ulaw_decode(0x80), 32124);
}

#[test]
fn correlation_finds_speech_through_ulaw_and_delay() {
    let dir = test_dir("corr");
    let a = dir.path().join("a.wav");
    let b = dir.path().join("b.wav");
    speech_wav(
        &a,
        "Hello, this is a test of the outbound dialer. One two three four five.",
    );
    speech_wav(
        &b,
        "The quick brown fox jumps over the lazy dog near the river bank on Sunday.",
    );
    let a = read_wav_8k(&a);
    let b = read_wav_8k(&b);
    assert!(a.len() > 8000 * 3, "espeak-ng speech too short");

    // a, 3000 samples late, through µ-law, with a little gain change
    let mut delayed = vec![0i16; 3000];
    delayed.extend(
        a.iter()
            .map(|&s| ulaw_decode(ulaw_encode((f64::from(s) * 0.7) as i16))),
    );
    delayed.extend(std::iter::repeat_n(0i16, 4000));

    let started = Instant::now();
    let (c, lag) = best_correlation(&a, &delayed, 16000);
    let took = started.elapsed();
    assert!(c > 0.9, "same speech through µ-law scored {c:.3}");
    assert!((lag - 3000).abs() <= 40, "lag {lag}, expected 3000");
    assert!(took < Duration::from_secs(1), "correlation took {took:?}");

    // a recording that holds only the first part of a long reference still scores
    let (c, lag) = best_correlation(&a, &delayed[..3000 + a.len() * 2 / 3], 16000);
    assert!(c > 0.9, "prefix scored {c:.3}");
    assert!((lag - 3000).abs() <= 40);

    // a recording that starts early (negative lag)
    let (c, lag) = best_correlation(&a, &a[2000..], 16000);
    assert!(c > 0.9 && (lag + 2000).abs() <= 40, "{c:.3} at {lag}");

    // unrelated speech, noise, silence
    let (c, _) = best_correlation(&a, &b, 16000);
    assert!(c < 0.5, "unrelated speech scored {c:.3}");
    let mut x = 0x1234_5678u32;
    let noise: Vec<i16> = (0..a.len())
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            ((x >> 16) as i16) / 8
        })
        .collect();
    let (c, _) = best_correlation(&a, &noise, 16000);
    assert!(c < 0.3, "white noise scored {c:.3}");
    let (c, _) = best_correlation(&a, &vec![0i16; a.len()], 16000);
    assert!(c < 0.1, "silence scored {c:.3}");
    let (c, _) = best_correlation(&a, &[], 16000);
    assert_eq!(c, 0.0);
}

#[test]
fn free_ports_are_distinct_and_outside_the_ephemeral_range() {
    let mut seen = std::collections::HashSet::new();
    for _ in 0..50 {
        let p = free_tcp_port();
        assert!(seen.insert(p), "port {p} handed out twice");
        let (lo, hi) = free_rtp_range(20);
        assert_eq!(hi - lo, 19);
        for q in lo..=hi {
            assert!(seen.insert(q), "port {q} handed out twice");
        }
    }
}

/// sipp UAS scenario `uas` against sipp UAC `uac` (which gets `uac_args`).
fn sipp_pair(
    name: &str,
    uas: &str,
    uac: &str,
    transport: Transport,
    uac_args: &[&str],
    code: Option<u16>,
) -> (SippRun, SippRun) {
    let dir = test_dir(name);
    let wav = dir.path().join("uas.wav");
    speech_wav(&wav, "This is the far end speaking. Testing, testing.");
    let server = Sipp::uas(dir.path(), uas)
        .transport(transport)
        .stream_wav(&wav)
        .start();
    let mut client = Sipp::uac(dir.path(), uac, &format!("127.0.0.1:{}", server.port))
        .transport(transport)
        .args(uac_args.iter().copied());
    if let Some(code) = code {
        client = client.replace("@CODE@", &code.to_string());
    }
    let client = client.start();
    let c = client.wait(WAIT);
    let s = server.wait(WAIT);
    c.assert_passed(&format!("{uac} against {uas}"));
    s.assert_passed(&format!("{uas} against {uac}"));
    (s, c)
}

#[test]
fn sipp_uas_answer_audio_streams_what_it_was_given() {
    let dir = test_dir("uas-answer");
    let wav = dir.path().join("uas.wav");
    speech_wav(
        &wav,
        "This is the far end speaking. Testing, one, two, three.",
    );
    let reference = read_wav_8k(&wav);
    for transport in [Transport::Udp, Transport::Tcp] {
        let server = Sipp::uas(dir.path(), "uas_answer_audio.xml")
            .transport(transport)
            .stream_wav(&wav)
            .start();
        let capture = RtpCapture::start();
        let client = Sipp::uac(
            dir.path(),
            "uac_call.xml",
            &format!("127.0.0.1:{}", server.port),
        )
        .transport(transport)
        .args(["-d", "4000", "-key", "rtp_port", &capture.port.to_string()])
        .start();
        let c = client.wait(WAIT);
        let s = server.wait(WAIT);
        c.assert_passed("uac_call");
        s.assert_passed("uas_answer_audio");
        assert_eq!(s.received_requests("ACK").len(), 1);
        assert_eq!(s.received_requests("BYE").len(), 1);
        let (got, packets) = capture.finish();
        assert!(packets > 100, "only {packets} RTP packets from sipp");
        let (corr, lag) = best_correlation(&reference, &got, 16000);
        assert!(
            corr > 0.9,
            "{transport:?}: sipp's stream scored {corr:.3} (lag {lag})"
        );
    }
}

#[test]
fn sipp_uas_final_response_scenarios_run() {
    for (uas, code) in [
        ("uas_busy.xml", 486),
        ("uas_reject.xml", 603),
        ("uas_404.xml", 404),
        ("uas_480.xml", 480),
        ("uas_503.xml", 503),
    ] {
        let (s, c) = sipp_pair(
            "uas-final",
            uas,
            "uac_final.xml",
            Transport::Udp,
            &[],
            Some(code),
        );
        assert_eq!(s.received_requests("ACK").len(), 1, "{uas}");
        assert_eq!(c.received_responses(code).len(), 1, "{uas}");
        assert_eq!(c.received_responses(180).len(), 1, "{uas}");
    }
}

#[test]
fn sipp_uas_ring_forever_takes_a_cancel() {
    let (s, c) = sipp_pair(
        "uas-ring",
        "uas_ring_forever.xml",
        "uac_cancel.xml",
        Transport::Udp,
        &[],
        None,
    );
    assert_eq!(s.received_requests("CANCEL").len(), 1);
    assert_eq!(c.received_responses(487).len(), 1);
    let r487 = &c.received_responses(487)[0];
    assert!(r487.header("CSeq").unwrap().ends_with("INVITE"));
}

#[test]
fn sipp_uas_early_media_and_remote_bye_run() {
    let capture = RtpCapture::start();
    let port = capture.port.to_string();
    let (s, c) = sipp_pair(
        "uas-early",
        "uas_early_media.xml",
        "uac_call.xml",
        Transport::Udp,
        &["-d", "1000", "-key", "rtp_port", &port],
        None,
    );
    assert_eq!(c.received_responses(183).len(), 1);
    assert_eq!(s.received_requests("BYE").len(), 1);
    let (_, packets) = capture.finish();
    assert!(packets > 100, "early media: {packets} packets");

    let capture = RtpCapture::start();
    let port = capture.port.to_string();
    let (_s, c) = sipp_pair(
        "uas-remote-bye",
        "uas_remote_bye.xml",
        "uac_wait_bye.xml",
        Transport::Udp,
        &["-key", "rtp_port", &port],
        None,
    );
    assert_eq!(c.received_requests("BYE").len(), 1);
    let (_, packets) = capture.finish();
    assert!(packets > 80, "remote bye: {packets} packets");
}

#[test]
fn baresip_answers_plays_and_records() {
    let dir = test_dir("baresip");
    let phone_wav = dir.path().join("phone.wav");
    speech_wav(
        &phone_wav,
        "Good afternoon. You have reached the test phone. Please speak after the tone.",
    );
    let caller_wav = dir.path().join("caller.wav");
    speech_wav(
        &caller_wav,
        "Hello, this is the caller. One two three four five.",
    );

    let phone = Baresip::start(dir.path(), &phone_wav);
    let capture = RtpCapture::start();
    let caller = Sipp::uac(
        dir.path(),
        "uac_call.xml",
        &format!("127.0.0.1:{}", phone.port),
    )
    .stream_wav(&caller_wav)
    .args([
        "-s",
        "baresip",
        "-d",
        "5000",
        "-key",
        "rtp_port",
        &capture.port.to_string(),
    ])
    .start();
    let run = caller.wait(WAIT);
    run.assert_passed("uac_call against baresip");

    // what baresip sent us is its source
    let (got, packets) = capture.finish();
    assert!(packets > 150, "only {packets} RTP packets from baresip");
    let (corr, lag) = best_correlation(&read_wav_8k(&phone.source), &got, 16000);
    assert!(corr > 0.8, "baresip's audio scored {corr:.3} (lag {lag})");

    // what baresip recorded is what sipp streamed
    let rec = phone.received_recording(Duration::from_secs(10));
    let (corr, lag) = best_correlation(&read_wav_8k(&caller_wav), &read_wav_8k(&rec), 16000);
    assert!(
        corr > 0.8,
        "baresip's recording scored {corr:.3} (lag {lag})"
    );
}

#[test]
fn kamailio_challenges_register_and_checks_the_password() {
    let dir = test_dir("kamailio-reg");
    for register_with_401 in [false, true] {
        let carrier = Kamailio::start(
            dir.path(),
            &CarrierConfig {
                realm: "carrier.test".into(),
                username: "alice".into(),
                password: "s3cret".into(),
                ua_uri: "sip:nobody@127.0.0.1:9".into(),
                register_with_401,
                sha256: false,
            },
        );
        let challenge: u16 = if register_with_401 { 401 } else { 407 };
        let register = |password: &str| {
            Sipp::uac(dir.path(), "uac_register_auth.xml", &carrier.addr())
                .replace(
                    "<recv response=\"407\" auth=\"true\"/>",
                    &format!("<recv response=\"{challenge}\" auth=\"true\"/>"),
                )
                .args(["-s", "alice", "-au", "alice", "-ap", password])
                .args(["-recv_timeout", "5000"])
                .start()
                .wait(WAIT)
        };
        let good = register("s3cret");
        good.assert_passed(&format!("REGISTER with a {challenge} challenge"));
        let ok = &good.received_responses(200)[0];
        assert!(ok.header("Contact").unwrap().contains("expires="));
        assert!(ok.header("Expires").is_some());
        assert!(carrier.wait_for("REGISTER accepted user=alice", Duration::from_secs(5)));

        let bad = register("wrong");
        assert!(!bad.passed, "a wrong password was accepted");
        assert!(carrier.wait_for("REGISTER auth failed", Duration::from_secs(5)));
        assert_eq!(carrier.count("REGISTER accepted"), 1);
        assert!(bad.received_responses(challenge).len() >= 2);
    }
}

#[test]
fn kamailio_relays_an_authenticated_call_to_baresip() {
    let dir = test_dir("kamailio-call");
    let phone_wav = dir.path().join("phone.wav");
    speech_wav(
        &phone_wav,
        "Good afternoon. You have reached the test phone. Please speak after the tone.",
    );
    let caller_wav = dir.path().join("caller.wav");
    speech_wav(
        &caller_wav,
        "Hello, this is the caller. One two three four five.",
    );
    let phone = Baresip::start(dir.path(), &phone_wav);
    let carrier = Kamailio::start(
        dir.path(),
        &CarrierConfig {
            realm: "carrier.test".into(),
            username: "alice".into(),
            password: "s3cret".into(),
            ua_uri: phone.uri(),
            register_with_401: false,
            sha256: false,
        },
    );
    let capture = RtpCapture::start();
    let run = Sipp::uac(dir.path(), "uac_call_auth.xml", &carrier.addr())
        .stream_wav(&caller_wav)
        .args([
            "-s",
            "15551234567",
            "-au",
            "alice",
            "-ap",
            "s3cret",
            "-d",
            "5000",
            "-key",
            "rtp_port",
            &capture.port.to_string(),
        ])
        .start()
        .wait(WAIT);
    run.assert_passed("uac_call_auth through kamailio to baresip");
    assert_eq!(carrier.count("INVITE challenged"), 1);
    assert_eq!(
        carrier.count("INVITE accepted user=alice to=15551234567"),
        1
    );
    assert!(carrier.count("in-dialog BYE") >= 1);
    assert_eq!(phone.calls_established(), 1);

    let (got, packets) = capture.finish();
    assert!(packets > 150, "only {packets} RTP packets from baresip");
    let (corr, _) = best_correlation(&read_wav_8k(&phone.source), &got, 16000);
    assert!(
        corr > 0.8,
        "baresip's audio through the carrier scored {corr:.3}"
    );
    let rec = phone.received_recording(Duration::from_secs(10));
    let (corr, _) = best_correlation(&read_wav_8k(&caller_wav), &read_wav_8k(&rec), 16000);
    assert!(
        corr > 0.8,
        "baresip's recording through the carrier scored {corr:.3}"
    );
}
